// /debug/: the pictures of a window (Overview), then find a trace by id, recent errors (by user), slow or failed
// traces, and logs in a time range.

import { useState } from "react";
import type { AuthError } from "../api";
import { TraceLink } from "../components/TraceLink";
import { formatDuration, formatTime, TRACE_ID } from "../format";
import type { ErrorEntry, LogLine, TraceSummary } from "../types";
import { useApi } from "../useApi";
import { Overview } from "./Overview";

type OnAuth = { onAuthError: (e: AuthError) => void };
const RANGES = ["-15m", "-1h", "-6h", "-24h", "-7d"];

function traceHref(id: string): string {
  return `trace/${id}`;
}

function FindTrace() {
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  return (
    <form
      className="find"
      onSubmit={(event) => {
        event.preventDefault();
        const id = text.trim().toLowerCase();
        if (!TRACE_ID.test(id)) setProblem("A trace id is 32 hexadecimal characters (the X-Trace-Id header).");
        else window.location.assign(traceHref(id));
      }}
    >
      <label htmlFor="trace-search">Trace id</label>
      <input id="trace-search" value={text} onChange={(e) => setText(e.target.value)} placeholder="X-Trace-Id" />
      <button type="submit">Open</button>
      {problem && <p className="problem" role="alert">{problem}</p>}
    </form>
  );
}

function Range({ id, value, onChange }: { id: string; value: string; onChange: (v: string) => void }) {
  return (
    <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
      {RANGES.map((range) => (
        <option key={range} value={range}>
          last {range.slice(1)}
        </option>
      ))}
    </select>
  );
}

function RecentErrors({ onAuthError }: OnAuth) {
  const [user, setUser] = useState("");
  const [since, setSince] = useState("-24h");
  const { data, error } = useApi<ErrorEntry[]>("errors", { user: user.trim() || undefined, since }, onAuthError);
  return (
    <section aria-labelledby="errors-title">
      <h2 id="errors-title">Recent errors</h2>
      <div className="filters">
        <label htmlFor="errors-user">User</label>
        <input id="errors-user" value={user} onChange={(e) => setUser(e.target.value)} placeholder="any user" />
        <label htmlFor="errors-since">Since</label>
        <Range id="errors-since" value={since} onChange={setSince} />
      </div>
      {error && <p className="problem" role="alert">{error}</p>}
      {data && data.length === 0 && <p className="muted">No errors.</p>}
      {data && data.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">User</th>
              <th scope="col">Where</th>
              <th scope="col">Message</th>
              <th scope="col">Trace</th>
            </tr>
          </thead>
          <tbody>
            {data.map((entry, index) => (
              <tr key={index} data-testid="error-row">
                <td>{formatTime(entry.time)}</td>
                <td>{entry.user_id ?? "—"}</td>
                <td>
                  {entry.service}: {entry.name}
                </td>
                <td>{entry.error_type ? `${entry.error_type}: ` : ""}{entry.message}</td>
                <td>{entry.trace_id && <TraceLink traceId={entry.trace_id} debugBase="./" />}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Traces({ onAuthError }: OnAuth) {
  const [minDuration, setMinDuration] = useState("");
  const [onlyErrors, setOnlyErrors] = useState(false);
  const [since, setSince] = useState("-1h");
  const params = { since, min_duration: minDuration.trim() || undefined, status: onlyErrors ? "error" : undefined };
  const { data, error } = useApi<TraceSummary[]>("traces", params, onAuthError);
  return (
    <section aria-labelledby="traces-title">
      <h2 id="traces-title">Recent and slow traces</h2>
      <div className="filters">
        <label htmlFor="traces-min">Slower than</label>
        <input id="traces-min" value={minDuration} onChange={(e) => setMinDuration(e.target.value)} placeholder="e.g. 2s" />
        <label>
          <input type="checkbox" checked={onlyErrors} onChange={(e) => setOnlyErrors(e.target.checked)} /> with errors
        </label>
        <label htmlFor="traces-since">Since</label>
        <Range id="traces-since" value={since} onChange={setSince} />
      </div>
      {error && <p className="problem" role="alert">{error}</p>}
      {data && data.length === 0 && <p className="muted">No traces.</p>}
      {data && data.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Request</th>
              <th scope="col">User</th>
              <th scope="col">Duration</th>
              <th scope="col">Trace</th>
            </tr>
          </thead>
          <tbody>
            {data.map((trace) => (
              <tr key={trace.trace_id} className={trace.errors ? "error" : undefined} data-testid="trace-row">
                <td>{formatTime(trace.time)}</td>
                <td>
                  {trace.service}: {trace.name}
                  {trace.errors > 0 && <span className="bad"> ({trace.errors} errors)</span>}
                </td>
                <td>{trace.user_id ?? "—"}</td>
                <td>{formatDuration(trace.duration_ms)}</td>
                <td>
                  <TraceLink traceId={trace.trace_id} debugBase="./" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Logs({ onAuthError }: OnAuth) {
  const [since, setSince] = useState("-15m");
  const [until, setUntil] = useState("");
  const [level, setLevel] = useState("");
  const { data, error } = useApi<LogLine[]>(
    "logs",
    { since: since.trim() || "-15m", until: until.trim() || undefined, level: level || undefined },
    onAuthError,
  );
  return (
    <section aria-labelledby="logs-title">
      <h2 id="logs-title">Logs in a time range</h2>
      <div className="filters">
        <label htmlFor="logs-since">From</label>
        <input id="logs-since" value={since} onChange={(e) => setSince(e.target.value)} placeholder="-15m or 15:00" />
        <label htmlFor="logs-until">to</label>
        <input id="logs-until" value={until} onChange={(e) => setUntil(e.target.value)} placeholder="now or 15:30" />
        <label htmlFor="logs-level">Level</label>
        <select id="logs-level" value={level} onChange={(e) => setLevel(e.target.value)}>
          <option value="">all</option>
          <option value="info">info and above</option>
          <option value="warning">warning and above</option>
          <option value="error">error and above</option>
        </select>
      </div>
      {error && <p className="problem" role="alert">{error}</p>}
      {data && data.length === 0 && <p className="muted">No log lines.</p>}
      {data && data.length > 0 && (
        <table className="logs">
          <tbody>
            {data.map((line, index) => (
              <tr key={index} className={`level-${line.level}`}>
                <td>{formatTime(line.time)}</td>
                <td>{line.level}</td>
                <td>{line.service}</td>
                <td>{line.message}</td>
                <td>{line.trace_id && <TraceLink traceId={line.trace_id} debugBase="./" />}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function HomePage({ onAuthError }: OnAuth) {
  return (
    <div className="home">
      <FindTrace />
      <Overview onAuthError={onAuthError} />
      <RecentErrors onAuthError={onAuthError} />
      <Traces onAuthError={onAuthError} />
      <Logs onAuthError={onAuthError} />
    </div>
  );
}
