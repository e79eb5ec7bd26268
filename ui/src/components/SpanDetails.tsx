// The selected span: status, timing, tokens and cost, its attributes, its events and its log lines in time order.

import { formatClock, formatCost, formatDuration } from "../format";
import type { LogLine, SpanNode } from "../types";

function value(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

export function LogLines({ lines, caption }: { lines: LogLine[]; caption: string }) {
  if (lines.length === 0) return <p className="muted">No log lines.</p>;
  const ordered = [...lines].sort((a, b) => a.time.localeCompare(b.time));
  return (
    <table className="logs">
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Level</th>
          <th scope="col">Message</th>
        </tr>
      </thead>
      <tbody>
        {ordered.map((line, index) => (
          <tr key={`${line.time}-${index}`} className={`level-${line.level}`} data-testid="log-line">
            <td className="nowrap">{formatClock(line.time)}</td>
            <td className="nowrap">{line.level}</td>
            <td>
              {line.message}
              {Object.keys(line.attributes).length > 0 && (
                <span className="muted"> {JSON.stringify(line.attributes)}</span>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function SpanDetails({ span }: { span: SpanNode }) {
  const attributes = Object.entries(span.attributes).sort(([a], [b]) => a.localeCompare(b));
  return (
    <section className="details" aria-labelledby="span-title">
      <h2 id="span-title">{span.name}</h2>
      <p>
        <span className={span.status === "ERROR" ? "bad" : undefined}>{span.status}</span>
        {span.status_message && <span className="bad"> — {span.status_message}</span>} · {span.service} · starts at +
        {formatDuration(span.offset_ms)} · lasts {formatDuration(span.duration_ms)}
        {span.input_tokens !== null && ` · ${span.input_tokens} in / ${span.output_tokens ?? 0} out tokens`}
        {span.cost_usd !== null && ` · ${formatCost(span.cost_usd)}`}
      </p>
      <LogLines lines={span.logs} caption="Log lines of this span" />
      {span.events.length > 0 && (
        <>
          <h3>Events</h3>
          <ul className="events">
            {span.events.map((event, index) => (
              <li key={index}>
                <strong>{event.name}</strong> <span className="muted">{value(event.attributes ?? {})}</span>
              </li>
            ))}
          </ul>
        </>
      )}
      <h3>Attributes</h3>
      <table className="attributes">
        <tbody>
          {attributes.map(([key, v]) => (
            <tr key={key}>
              <th scope="row">{key}</th>
              <td>{value(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
