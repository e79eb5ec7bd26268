// /debug/trace/{id}: the summary bar, the waterfall, and the selected span's details and logs.

import { useEffect, useState } from "react";
import type { AuthError } from "../api";
import { LogLines, SpanDetails } from "../components/SpanDetails";
import { SummaryBar } from "../components/SummaryBar";
import { Waterfall } from "../components/Waterfall";
import { formatTime } from "../format";
import type { TraceReport } from "../types";
import { useApi } from "../useApi";

export function TracePage({ traceId, onAuthError }: { traceId: string; onAuthError: (e: AuthError) => void }) {
  const { data: report, error, loading } = useApi<TraceReport>(`traces/${encodeURIComponent(traceId)}`, {}, onAuthError);
  const [selected, setSelected] = useState<string | null>(null);
  useEffect(() => {
    if (report && selected === null && report.spans.length) {
      const failing = report.spans.find((span) => span.status === "ERROR");
      setSelected((failing ?? report.spans[0]).span_id);
    }
  }, [report, selected]);
  if (loading) return <p aria-live="polite">Loading trace {traceId}…</p>;
  if (error || !report) return <p className="problem" role="alert">{error ?? "No such trace."}</p>;
  const span = report.spans.find((candidate) => candidate.span_id === selected) ?? null;
  return (
    <article className="trace">
      <header>
        <h1>
          Trace <code data-testid="trace-heading">{report.trace_id}</code>
        </h1>
        <p className="muted">
          {formatTime(report.start)} · {report.services.join(", ")} · {report.spans.length} spans
        </p>
        {report.from_archive && (
          <p className="muted" data-testid="from-archive">
            Read from the archive: this trace has left Postgres (retention).
          </p>
        )}
      </header>
      <SummaryBar report={report} />
      <div className="trace-body">
        <Waterfall spans={report.spans} totalMs={report.duration_ms} selected={selected} onSelect={setSelected} />
        {span && <SpanDetails span={span} />}
      </div>
      {report.orphan_logs.length > 0 && <LogLines lines={report.orphan_logs} caption="Log lines outside any span" />}
    </article>
  );
}
