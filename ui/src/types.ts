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
