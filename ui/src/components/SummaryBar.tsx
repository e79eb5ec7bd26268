// One line that answers "why was it slow, what did it cost": duration, slowest stage, tokens, cost, errors, links.

import { formatCost, formatDuration } from "../format";
import type { TraceReport } from "../types";

export function SummaryBar({ report }: { report: TraceReport }) {
  return (
    <dl className="summary" aria-label="Trace summary">
      <div>
        <dt>Duration</dt>
        <dd data-testid="total-duration">{formatDuration(report.duration_ms)}</dd>
      </div>
      <div>
        <dt>Slowest stage</dt>
        <dd>{report.slowest_stage ?? "—"}</dd>
      </div>
      <div>
        <dt>Tokens in / out</dt>
        <dd>
          {report.input_tokens} / {report.output_tokens}
        </dd>
      </div>
      <div>
        <dt>Cost</dt>
        <dd>{formatCost(report.cost_usd)}</dd>
      </div>
      <div>
        <dt>Errors</dt>
        <dd className={report.errors ? "bad" : undefined}>{report.errors}</dd>
      </div>
      <div>
        <dt>Users</dt>
        <dd>{report.user_ids.join(", ") || "—"}</dd>
      </div>
      <div className="links">
        <dt>Open in</dt>
        <dd>
          {report.links.trace_viewer ? (
            <a href={report.links.trace_viewer} target="_blank" rel="noreferrer">
              Jaeger / Tempo
            </a>
          ) : (
            <span title="set OTEL_RAG_TRACE_VIEWER_URL">no trace viewer</span>
          )}
          {report.links.langsmith && (
            <>
              {" · "}
              <a href={report.links.langsmith} target="_blank" rel="noreferrer">
                LangSmith
              </a>
            </>
          )}
        </dd>
      </div>
    </dl>
  );
}
