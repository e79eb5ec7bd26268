// The home page's pictures over one window: the health strip, requests and errors, p95, answer quality with the
// detected drop marked, and cost per hour by model. A point of any chart lists the traces behind it: the failed
// requests, the slowest ones (at or above that bucket's p95), the hallucinated answers, or all of that bucket's.

import { useMemo, useState } from "react";
import type { AuthError } from "../api";
import {
  COLOURS,
  bucketRange,
  costData,
  latencyData,
  qualityData,
  qualityVerdict,
  seconds,
  trafficData,
} from "../charts";
import { Chart } from "../components/Chart";
import { HealthStrip } from "../components/HealthStrip";
import { TraceLink } from "../components/TraceLink";
import { formatDuration, formatTime } from "../format";
import type { HealthAnswer, JudgedAnswer, QualityAnswer, SeriesAnswer, TraceSummary } from "../types";
import { useApi } from "../useApi";

type OnAuth = { onAuthError: (e: AuthError) => void };
type Kind = "traffic" | "latency" | "quality" | "cost";
interface Selection {
  kind: Kind;
  index: number;
}
const WINDOWS = ["-15m", "-1h", "-6h", "-24h", "-7d"];

/** The window from the address (?since=&until=, as the docs' links and otel-rag's times write it) or the default. */
export function windowFromUrl(search: string): { since: string; until?: string } {
  const params = new URLSearchParams(search);
  return { since: params.get("since") || "-24h", until: params.get("until") || undefined };
}

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour12: false });
}

function Behind({ selection, series, quality, onAuthError }: { selection: Selection; series: SeriesAnswer; quality: QualityAnswer | null } & OnAuth) {
  const fromQuality = selection.kind === "quality" && quality !== null;
  const xs = fromQuality ? quality.buckets.map((b) => seconds(b.start)) : series.points.map((p) => seconds(p.start));
  const range = bucketRange(xs, selection.index, fromQuality ? quality.bucket_seconds : series.bucket_seconds);
  const point = fromQuality ? null : series.points[selection.index];
  const traceParams: Record<string, string | undefined> = { ...range, limit: "20" };
  if (selection.kind === "traffic") traceParams.status = "error";
  if (selection.kind === "latency" && point?.p95_ms) traceParams.min_duration = `${Math.floor(point.p95_ms)}ms`;
  const traces = useApi<TraceSummary[]>(fromQuality ? null : "traces", traceParams, onAuthError);
  const answers = useApi<JudgedAnswer[]>(fromQuality ? "answers" : null, { ...range, limit: "20" }, onAuthError);
  const what = {
    traffic: "Failed requests",
    latency: "Slowest requests (at or above the p95)",
    quality: "Hallucinated answers",
    cost: "Requests",
  }[selection.kind];
  return (
    <section className="behind" aria-labelledby="behind-title" data-testid="behind">
      <h2 id="behind-title">
        {what}, {clock(range.since)}–{clock(range.until)}
      </h2>
      {(traces.error || answers.error) && <p className="problem" role="alert">{traces.error ?? answers.error}</p>}
      {traces.data && (
        <ul className="trace-list">
          {traces.data.length === 0 && <li className="muted">None in this bucket.</li>}
          {traces.data.map((trace) => (
            <li key={trace.trace_id} data-testid="behind-trace">
              <TraceLink traceId={trace.trace_id} debugBase="./" /> {trace.service}: {trace.name} ·{" "}
              {formatDuration(trace.duration_ms)} · {trace.user_id ?? "—"}
              {trace.errors > 0 && <span className="bad"> · {trace.errors} errors</span>}
            </li>
          ))}
        </ul>
      )}
      {answers.data && (
        <ul className="trace-list">
          {answers.data.length === 0 && <li className="muted">None in this bucket.</li>}
          {answers.data.map((answer, index) => (
            <li key={index} data-testid="behind-trace">
              {answer.trace_id && <TraceLink traceId={answer.trace_id} debugBase="./" />} {formatTime(answer.time)} ·{" "}
              {answer.user_id ?? "—"} · {answer.explanation ?? ""}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function Overview({ onAuthError }: OnAuth) {
  const [window_, setWindow] = useState(() => windowFromUrl(window.location.search));
  const [selection, setSelection] = useState<Selection | null>(null);
  const custom = !WINDOWS.includes(window_.since) || window_.until !== undefined;
  const params = { since: window_.since, until: window_.until };
  const series = useApi<SeriesAnswer>("series", params, onAuthError);
  const quality = useApi<QualityAnswer>("quality", params, onAuthError);
  const health = useApi<HealthAnswer>("health", custom ? params : { since: "-15m" }, onAuthError);
  const choose = (kind: Kind) => (index: number) => setSelection({ kind, index });
  const selectedIn = (kind: Kind) => (selection?.kind === kind ? selection.index : null);

  const traffic = useMemo(() => (series.data ? trafficData(series.data) : null), [series.data]);
  const latency = useMemo(() => (series.data ? latencyData(series.data) : null), [series.data]);
  const cost = useMemo(() => (series.data ? costData(series.data) : null), [series.data]);
  const trend = useMemo(() => (quality.data ? qualityData(quality.data) : null), [quality.data]);
  const s = series.data;
  const q = quality.data;
  return (
    <div className="overview">
      <div className="filters">
        <label htmlFor="overview-window">Window</label>
        <select
          id="overview-window"
          value={custom ? "custom" : window_.since}
          onChange={(event) => {
            setSelection(null);
            setWindow({ since: event.target.value });
          }}
        >
          {custom && <option value="custom">{`${formatTime(window_.since)} – ${window_.until ? formatTime(window_.until) : "now"}`}</option>}
          {WINDOWS.map((since) => (
            <option key={since} value={since}>
              last {since.slice(1)}
            </option>
          ))}
        </select>
        <a href={`compare?by=rag.chunk.size&since=${encodeURIComponent(window_.since)}${window_.until ? `&until=${encodeURIComponent(window_.until)}` : ""}`}>
          Compare chunk sizes →
        </a>
      </div>
      {health.error && <p className="problem" role="alert">{health.error}</p>}
      {health.data && <HealthStrip health={health.data} />}
      {(series.error || quality.error) && <p className="problem" role="alert">{series.error ?? quality.error}</p>}
      <div className="charts">
        {s && traffic && (
          <Chart
            title="Requests and errors"
            data={traffic}
            series={[
              { label: "requests", colour: COLOURS[0], unit: "/min" },
              { label: "errors", colour: COLOURS[3], unit: "%", scale: "y2" },
            ]}
            selected={selectedIn("traffic")}
            onSelect={choose("traffic")}
            describe={(i) => `${clock(s.points[i].start)}: ${s.points[i].requests} requests, ${s.points[i].errors} failed`}
          />
        )}
        {s && latency && (
          <Chart
            title="Latency p95"
            data={latency}
            series={[{ label: "p95", colour: COLOURS[1], unit: "ms", digits: 0 }]}
            selected={selectedIn("latency")}
            onSelect={choose("latency")}
            describe={(i) => `${clock(s.points[i].start)}: p95 ${s.points[i].p95_ms === null ? "—" : formatDuration(s.points[i].p95_ms)}`}
          />
        )}
        {q && trend && (
          <Chart
              title="Answer quality"
              note={
                <p className={q.drop ? "quality-verdict bad" : "quality-verdict"} data-testid="quality-verdict">
                  {qualityVerdict(q)}
                </p>
              }
              data={trend}
              series={[
                { label: "hallucinated", colour: COLOURS[3], unit: "%" },
                { label: "user feedback", colour: COLOURS[2], unit: "%", scale: "y2", digits: 0 },
              ]}
              marks={q.drop ? [seconds(q.drop.at)] : []}
              selected={selectedIn("quality")}
              onSelect={choose("quality")}
              describe={(i) => `${clock(q.buckets[i].start)}: ${q.buckets[i].answers} answers, ${q.buckets[i].hallucinated} hallucinated`}
          />
        )}
        {s && cost && (
          <Chart
            title="Cost per hour by model"
            data={cost}
            series={s.models.map((model, index) => ({ label: model, colour: COLOURS[index % COLOURS.length], unit: "$/h", digits: 4 }))}
            selected={selectedIn("cost")}
            onSelect={choose("cost")}
            describe={(i) =>
              `${clock(s.points[i].start)}: ` +
              (Object.entries(s.points[i].cost_usd)
                .map(([model, usd]) => `${model} $${usd.toFixed(4)}`)
                .join(", ") || "no cost")
            }
          />
        )}
      </div>
      {selection && s && <Behind key={`${selection.kind}-${selection.index}`} selection={selection} series={s} quality={q} onAuthError={onAuthError} />}
    </div>
  );
}
