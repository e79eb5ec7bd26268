// TraceLink / TraceBadge: show the trace id an API returned (X-Trace-Id, or `trace_id` in the body) with a link to
// its page on the otel-rag debug page. For an app's own screens: `debugBase` is where the debug router is mounted.

import { useState } from "react";
import { shortId } from "../format";

export interface TraceLinkProps {
  traceId: string;
  /** URL of the debug page, e.g. "/debug/" (the default) or "https://ops.example.com/debug/". */
  debugBase?: string;
  children?: React.ReactNode;
}

export function traceUrl(traceId: string, debugBase = "/debug/"): string {
  const base = debugBase.endsWith("/") ? debugBase : debugBase + "/";
  return `${base}trace/${encodeURIComponent(traceId)}`;
}

export function TraceLink({ traceId, debugBase, children }: TraceLinkProps) {
  return (
    <a className="trace-link" href={traceUrl(traceId, debugBase)} data-trace-id={traceId}>
      {children ?? <code>{shortId(traceId)}</code>}
    </a>
  );
}

export interface TraceBadgeProps extends TraceLinkProps {
  label?: string;
}

/** The id in full (selectable, copyable) with a link to its waterfall: for "your upload failed, quote this id". */
export function TraceBadge({ traceId, debugBase, label = "Trace" }: TraceBadgeProps) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(traceId);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return (
    <span className="trace-badge" role="group" aria-label={`${label} ${traceId}`}>
      <span className="trace-badge-label">{label}</span>
      <code className="trace-badge-id" data-testid="trace-id" data-trace-id={traceId}>
        {traceId}
      </code>
      <button type="button" className="trace-badge-copy" onClick={copy} aria-label="Copy trace id">
        {copied ? "Copied" : "Copy"}
      </button>
      <TraceLink traceId={traceId} debugBase={debugBase}>
        Open trace
      </TraceLink>
    </span>
  );
}
