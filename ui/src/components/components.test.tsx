import { act } from "react";
import { render, texts } from "../testing";
import type { SpanNode, TraceReport } from "../types";
import { HealthStrip } from "./HealthStrip";
import { LogLines } from "./SpanDetails";
import { SummaryBar } from "./SummaryBar";
import { TraceBadge, TraceLink, traceUrl } from "./TraceLink";
import { barGeometry, Waterfall } from "./Waterfall";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

function span(over: Partial<SpanNode>): SpanNode {
  return {
    span_id: "a", parent_span_id: null, name: "POST /documents", service: "rag-app", kind: "SERVER",
    status: "UNSET", status_message: null, start: "2026-11-29T10:00:00+00:00", offset_ms: 0, duration_ms: 100,
    depth: 0, attributes: {}, events: [], cost_usd: null, input_tokens: null, output_tokens: null, logs: [],
    ...over,
  };
}

const SPANS = [
  span({ span_id: "root", duration_ms: 200 }),
  span({ span_id: "p", parent_span_id: "root", name: "rag.parse", depth: 1, offset_ms: 10, duration_ms: 40,
    attributes: { "rag.stage": "parse" } }),
  span({ span_id: "g", parent_span_id: "root", name: "rag.generate", depth: 1, offset_ms: 50, duration_ms: 150,
    status: "ERROR", attributes: { "rag.stage": "generate" } }),
];

describe("Waterfall", () => {
  it("draws each span at its offset and to scale, errors marked", () => {
    const view = render(<Waterfall spans={SPANS} totalMs={200} selected="p" onSelect={() => {}} />);
    expect(texts(view.container, ".name")).toEqual(["POST /documents", "rag.parseparse", "!rag.generategenerate"]);
    expect(texts(view.container, '[data-testid="span-duration"]')).toEqual(["200 ms", "40 ms", "150 ms"]);
    const bars = Array.from(view.container.querySelectorAll<HTMLElement>(".bar"));
    expect(bars.map((bar) => [bar.style.left, bar.style.width])).toEqual([["0%", "100%"], ["5%", "20%"], ["25%", "75%"]]);
    expect(bars[2].className).toContain("bar-error");
    const rows = view.container.querySelectorAll("li");
    expect(rows[2].className).toBe("error");
    expect(view.container.querySelector('[aria-pressed="true"]')?.getAttribute("data-span-name")).toBe("rag.parse");
    view.unmount();
  });

  it("moves the selection with the keyboard", () => {
    const selected: string[] = [];
    const view = render(<Waterfall spans={SPANS} totalMs={200} selected="root" onSelect={(id) => selected.push(id)} />);
    const first = view.container.querySelector<HTMLButtonElement>("button.row")!;
    act(() => first.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true })));
    act(() => first.dispatchEvent(new KeyboardEvent("keydown", { key: "End", bubbles: true })));
    act(() => first.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true })));
    expect(selected).toEqual(["p", "g", "root"]);
    view.unmount();
  });

  it("keeps tiny spans visible and clamps bars inside the track", () => {
    expect(barGeometry(span({ offset_ms: 0, duration_ms: 0 }), 1000).width).toBeCloseTo(0.4);
    const late = barGeometry(span({ offset_ms: 990, duration_ms: 50 }), 1000);
    expect(late.left + late.width).toBeLessThanOrEqual(100);
    expect(barGeometry(span({ duration_ms: 5 }), 0).width).toBe(100);
  });
});

describe("TraceLink and TraceBadge", () => {
  it("link to the trace's page on the debug page", () => {
    expect(traceUrl(TRACE)).toBe(`/debug/trace/${TRACE}`);
    expect(traceUrl(TRACE, "https://ops.example.com/tools/debug")).toBe(`https://ops.example.com/tools/debug/trace/${TRACE}`);
    const view = render(<TraceLink traceId={TRACE} />);
    const link = view.container.querySelector("a")!;
    expect(link.getAttribute("href")).toBe(`/debug/trace/${TRACE}`);
    expect(link.textContent).toBe("4bf92f35…4736");
    view.unmount();
  });

  it("show the whole id with a copy button and an open link", () => {
    const view = render(<TraceBadge traceId={TRACE} debugBase="/ops/debug/" />);
    expect(view.container.querySelector('[data-testid="trace-id"]')!.textContent).toBe(TRACE);
    expect(view.container.querySelector("a")!.getAttribute("href")).toBe(`/ops/debug/trace/${TRACE}`);
    expect(view.container.querySelector("button")!.getAttribute("aria-label")).toBe("Copy trace id");
    view.unmount();
  });
});

describe("SummaryBar and log lines", () => {
  const report: TraceReport = {
    trace_id: TRACE, start: "2026-11-29T10:00:00+00:00", duration_ms: 1234, spans: SPANS, orphan_logs: [],
    services: ["rag-app"], user_ids: ["ana"], errors: 1, input_tokens: 1300, output_tokens: 200, cost_usd: 0.0165,
    slowest_stage: "generate", links: { trace_viewer: `http://jaeger/trace/${TRACE}`, langsmith: null },
  };

  it("answers duration, slowest stage, tokens, cost and where else to look", () => {
    const view = render(<SummaryBar report={report} />);
    expect(texts(view.container, "dd")).toEqual(["1.23 s", "generate", "1300 / 200", "$0.0165", "1", "ana", "Jaeger / Tempo"]);
    expect(view.container.querySelector("a")!.getAttribute("href")).toBe(`http://jaeger/trace/${TRACE}`);
    view.unmount();
  });

  it("lists log lines in time order", () => {
    const line = (time: string, message: string) => ({
      time, level: "info", logger: "rag", message, trace_id: TRACE, span_id: "p", service: "rag-app",
      user_id: null, attributes: {},
    });
    const lines = [line("2026-11-29T10:00:02+00:00", "second"), line("2026-11-29T10:00:01+00:00", "first")];
    const view = render(<LogLines lines={lines} caption="logs" />);
    expect(texts(view.container, '[data-testid="log-line"] td:last-child')).toEqual(["first", "second"]);
    view.unmount();
  });
});

describe("HealthStrip", () => {
  it("shows the verdict, its figures and why", () => {
    const { container, unmount } = render(
      <HealthStrip
        health={{
          status: "DEGRADED",
          reasons: ["hallucinations 24.0% of 300 answers (over 10 %)"],
          window: { start: "2026-12-03T15:00:00Z", end: "2026-12-03T15:15:00Z" },
          requests: 900,
          requests_per_minute: 60,
          errors: 9,
          error_rate: 0.01,
          routes: [{ service: "rag", route: "/query", requests: 800, p95_ms: 95 }],
          answers: 300,
          hallucinations: 72,
          hallucination_rate: 0.24,
          cost_per_hour_usd: 1.5,
          freshness_s: 3,
        }}
      />,
    );
    const strip = container.querySelector('[data-testid="health-strip"]');
    expect(strip?.className).toBe("health-strip status-degraded");
    expect(texts(container, "[data-testid=health-status]")).toEqual(["DEGRADED"]);
    expect(texts(container, "dd")).toEqual(["60.0/min", "1.0%", "/query 95 ms", "24.0%", "$1.5000/h", "3 s ago"]);
    expect(texts(container, ".reasons")).toEqual(["Why: hallucinations 24.0% of 300 answers (over 10 %)"]);
    unmount();
  });
});
