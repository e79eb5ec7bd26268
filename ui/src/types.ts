// The debug API's JSON, as otel_rag/_store/queries.py defines it (dataclasses -> JSON).

export interface LogLine {
  time: string;
  level: string;
  logger: string | null;
  message: string | null;
  trace_id: string | null;
  span_id: string | null;
  service: string;
  user_id: string | null;
  attributes: Record<string, unknown>;
}

export interface SpanNode {
  span_id: string;
  parent_span_id: string | null;
  name: string;
  service: string;
  kind: string;
  status: string; // UNSET, OK, ERROR
  status_message: string | null;
  start: string;
  offset_ms: number;
  duration_ms: number;
  depth: number;
  attributes: Record<string, unknown>;
  events: Array<{ name?: string; time?: string; attributes?: Record<string, unknown> }>;
  cost_usd: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  logs: LogLine[];
}

export interface TraceReport {
  trace_id: string;
  start: string;
  duration_ms: number;
  spans: SpanNode[];
  orphan_logs: LogLine[];
  services: string[];
  user_ids: string[];
  errors: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number | null;
  slowest_stage: string | null;
  links: { trace_viewer: string | null; langsmith: string | null };
  truncated?: boolean;
  from_archive?: boolean; // read from the retention archive: the trace has left Postgres
}

export interface ErrorEntry {
  time: string;
  source: "span" | "log";
  trace_id: string | null;
  span_id: string | null;
  service: string;
  user_id: string | null;
  name: string | null;
  message: string | null;
  error_type: string | null;
}

export interface TraceSummary {
  trace_id: string;
  time: string;
  name: string;
  service: string;
  user_id: string | null;
  duration_ms: number;
  status: string;
  status_message: string | null;
  errors: number;
}

// The pictures' answers (otel_rag/web/_charts.py).

export interface SeriesPoint {
  start: string;
  requests: number;
  errors: number;
  p95_ms: number | null;
  cost_usd: Record<string, number>; // by model
}

export interface SeriesAnswer {
  window: { start: string; end: string };
  bucket_seconds: number;
  models: string[];
  points: SeriesPoint[];
}

export interface QualityBucket {
  start: string;
  answers: number;
  hallucinated: number;
  hallucination_rate: number | null;
  scores: Record<string, number>;
  feedback: number | null;
  feedback_count: number;
}

export interface QualityAnswer {
  window: { start: string; end: string };
  bucket_seconds: number;
  buckets: QualityBucket[];
  drop: {
    at: string;
    before_rate: number;
    after_rate: number;
    before_answers: number;
    after_answers: number;
    p_value: number;
    confidence: number;
  } | null;
  boundaries_tried: number;
  changes: Array<{ what: string; before: Record<string, number>; after: Record<string, number> }>;
}

export interface HealthAnswer {
  status: "HEALTHY" | "DEGRADED" | "DOWN";
  reasons: string[];
  window: { start: string; end: string };
  requests: number;
  requests_per_minute: number;
  errors: number;
  error_rate: number | null;
  routes: Array<{ service: string; route: string; requests: number; p95_ms: number }>;
  answers: number;
  hallucinations: number;
  hallucination_rate: number | null;
  cost_per_hour_usd: number;
  freshness_s: number | null;
}

export interface CompareGroup {
  name: string;
  n: number;
  p50_ms: number | null;
  p95_ms: number | null;
  cost_per_request: number;
  tokens_per_request: number;
  error_rate: number;
  hallucination_rate: number | null;
  latency_quantiles_ms: number[]; // at 0, 5, ..., 100 %
}

export interface Difference {
  metric: string;
  change: number | null;
  low: number | null;
  high: number | null;
  relative: boolean; // percent of the baseline, or points
}

export interface CompareAnswer {
  by: string;
  groups: CompareGroup[];
  comparisons: Array<{ group: string; baseline: string; enough_data: boolean; differences: Difference[]; verdict: string }>;
}

export interface JudgedAnswer {
  time: string;
  trace_id: string | null;
  user_id: string | null;
  service: string;
  label: string | null;
  score: number | null;
  explanation: string | null;
}
