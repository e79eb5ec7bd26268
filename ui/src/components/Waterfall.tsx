// The span tree as a waterfall: names indented by depth, bars at their start offset and to scale, errors in red.
// Keyboard: Tab to the list, Up/Down (or j/k) move the selection, Home/End jump; Enter or click selects.

import { useRef } from "react";
import { formatDuration, stageOf } from "../format";
import type { SpanNode } from "../types";

export interface WaterfallProps {
  spans: SpanNode[];
  totalMs: number;
  selected: string | null;
  onSelect: (spanId: string) => void;
}

export function barGeometry(span: SpanNode, totalMs: number): { left: number; width: number } {
  const total = totalMs > 0 ? totalMs : 1;
  const left = Math.min(100, Math.max(0, (span.offset_ms / total) * 100));
  const width = Math.max(0.4, Math.min(100 - left, (span.duration_ms / total) * 100));
  return { left, width };
}

export function Waterfall({ spans, totalMs, selected, onSelect }: WaterfallProps) {
  const rows = useRef<Array<HTMLButtonElement | null>>([]);
  const move = (index: number) => {
    const next = Math.max(0, Math.min(spans.length - 1, index));
    onSelect(spans[next].span_id);
    rows.current[next]?.focus();
  };
  const onKeyDown = (event: React.KeyboardEvent, index: number) => {
    const keys: Record<string, number> = { ArrowDown: index + 1, j: index + 1, ArrowUp: index - 1, k: index - 1 };
    if (event.key in keys) move(keys[event.key]);
    else if (event.key === "Home") move(0);
    else if (event.key === "End") move(spans.length - 1);
    else return;
    event.preventDefault();
  };
  return (
    <ol className="waterfall" aria-label="Spans, in start order">
      {spans.map((span, index) => {
        const { left, width } = barGeometry(span, totalMs);
        const stage = stageOf(span);
        const failed = span.status === "ERROR";
        return (
          <li key={span.span_id} className={failed ? "error" : undefined}>
            <button
              type="button"
              ref={(element) => {
                rows.current[index] = element;
              }}
              className="row"
              aria-pressed={selected === span.span_id}
              data-span-name={span.name}
              onClick={() => onSelect(span.span_id)}
              onKeyDown={(event) => onKeyDown(event, index)}
            >
              <span className="name" style={{ paddingLeft: `${span.depth * 1.1}em` }}>
                {failed && <span className="error-mark" aria-label="error">!</span>}
                {span.name}
                {stage && <span className={`stage stage-${stage}`}>{stage}</span>}
              </span>
              <span className="track" aria-hidden="true">
                <span className={`bar ${failed ? "bar-error" : stage ? `bar-${stage}` : "bar-other"}`}
                  style={{ left: `${left}%`, width: `${width}%` }} />
              </span>
              <span className="duration" data-testid="span-duration">
                {formatDuration(span.duration_ms)}
              </span>
            </button>
          </li>
        );
      })}
    </ol>
  );
}
