// /debug/compare?by=rag.chunk.size: requests grouped by an attribute (or before/after a time), side by side: each
// group's figures, its latency distribution, and the verdict line of `otel-rag compare` against the baseline.

import { useMemo, useState } from "react";
import type { AuthError } from "../api";
import { COLOURS, distributionData, percent } from "../charts";
import { Chart } from "../components/Chart";
import { formatCost, formatDuration } from "../format";
import type { CompareAnswer } from "../types";
import { useApi } from "../useApi";

const KEYS = ["by", "before", "after", "stage", "baseline", "since", "until"] as const;
type Query = Partial<Record<(typeof KEYS)[number], string>>;
const SUGGESTED = ["rag.chunk.size", "gen_ai.request.model", "service.version", "rag.retrieval.top_k"];

export function compareQuery(search: string): Query {
  const params = new URLSearchParams(search);
  const query: Query = {};
  for (const key of KEYS) {
    const value = params.get(key);
    if (value) query[key] = value;
  }
  if (!query.by && !query.before && !query.after) query.by = "rag.chunk.size";
  return query;
}

export function ComparePage({ onAuthError }: { onAuthError: (e: AuthError) => void }) {
  const [query, setQuery] = useState<Query>(() => compareQuery(window.location.search));
  const [by, setBy] = useState(query.by ?? "");
  const { data, error, loading } = useApi<CompareAnswer>("compare", { since: "-24h", ...query }, onAuthError);
  const distribution = useMemo(() => (data ? distributionData(data.groups) : null), [data]);
  const baseline = data?.comparisons[0]?.baseline;
  return (
    <div className="compare">
      <h1>Compare requests {query.by ? `by ${query.by}` : "before and after"}</h1>
      <form
        className="filters"
        onSubmit={(event) => {
          event.preventDefault();
          const next: Query = { ...query, by: by.trim() || undefined, before: undefined, after: undefined, baseline: undefined };
          const search = new URLSearchParams(Object.entries(next).filter((entry): entry is [string, string] => !!entry[1]));
          window.history.replaceState(null, "", `?${search}`);
          setQuery(next);
        }}
      >
        <label htmlFor="compare-by">By attribute</label>
        <input id="compare-by" list="compare-suggested" value={by} onChange={(e) => setBy(e.target.value)} />
        <datalist id="compare-suggested">
          {SUGGESTED.map((name) => (
            <option key={name} value={name} />
          ))}
        </datalist>
        <button type="submit">Compare</button>
        <a href="./">← Overview</a>
      </form>
      {error && <p className="problem" role="alert">{error}</p>}
      {loading && <p className="muted">Comparing…</p>}
      {data && data.groups.length < 2 && <p className="muted">Nothing to compare: {data.groups.length} group(s) of requests in the window.</p>}
      {data && data.groups.length >= 2 && (
        <>
          <div className="filters">
            <label htmlFor="compare-baseline">Baseline</label>
            <select
              id="compare-baseline"
              value={baseline ?? ""}
              onChange={(event) => setQuery({ ...query, baseline: event.target.value })}
            >
              {data.groups.map((group) => (
                <option key={group.name} value={group.name}>
                  {group.name}
                </option>
              ))}
            </select>
          </div>
          <ul className="verdicts">
            {data.comparisons.map((comparison) => (
              <li key={comparison.group} data-testid="verdict">
                {comparison.verdict}
              </li>
            ))}
          </ul>
          <table data-testid="compare-groups">
            <thead>
              <tr>
                <th scope="col">{data.by}</th>
                <th scope="col">n</th>
                <th scope="col">p50</th>
                <th scope="col">p95</th>
                <th scope="col">Cost / request</th>
                <th scope="col">Tokens</th>
                <th scope="col">Errors</th>
                <th scope="col">Hallucinated</th>
              </tr>
            </thead>
            <tbody>
              {data.groups.map((group, index) => (
                <tr key={group.name} data-testid="compare-group">
                  <th scope="row">
                    <span className="swatch" style={{ background: COLOURS[index % COLOURS.length] }} /> {group.name}
                    {group.name === baseline && <span className="muted"> (baseline)</span>}
                  </th>
                  <td>{group.n}</td>
                  <td>{group.p50_ms === null ? "—" : formatDuration(group.p50_ms)}</td>
                  <td>{group.p95_ms === null ? "—" : formatDuration(group.p95_ms)}</td>
                  <td>{formatCost(group.cost_per_request)}</td>
                  <td>{group.tokens_per_request.toFixed(0)}</td>
                  <td>{percent(group.error_rate)}</td>
                  <td>{percent(group.hallucination_rate)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {distribution && (
            <Chart
              title="Latency distribution (percentile → ms)"
              data={distribution}
              time={false}
              xLabel="percentile"
              series={data.groups.map((group, index) => ({ label: group.name, colour: COLOURS[index % COLOURS.length], unit: "ms", digits: 0 }))}
              describe={() => ""}
              height={260}
            />
          )}
        </>
      )}
    </div>
  );
}
