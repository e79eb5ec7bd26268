import {
  bucketRange,
  costData,
  distributionData,
  healthFigures,
  latencyData,
  qualityData,
  qualityVerdict,
  trafficData,
} from "./charts";
import { compareQuery } from "./pages/ComparePage";
import { windowFromUrl } from "./pages/Overview";
import type { HealthAnswer, QualityAnswer, SeriesAnswer } from "./types";

const series: SeriesAnswer = {
  window: { start: "2026-12-03T15:00:00Z", end: "2026-12-03T15:02:00Z" },
  bucket_seconds: 30,
  models: ["gpt-4.1-nano", "gpt-4o-mini"],
  points: [
    { start: "2026-12-03T15:00:00Z", requests: 20, errors: 1, p95_ms: 120, cost_usd: { "gpt-4o-mini": 0.01 } },
    { start: "2026-12-03T15:00:30Z", requests: 0, errors: 0, p95_ms: null, cost_usd: {} },
    { start: "2026-12-03T15:01:00Z", requests: 10, errors: 5, p95_ms: 80, cost_usd: { "gpt-4.1-nano": 0.002 } },
  ],
};

describe("the charts' columns", () => {
  it("turn requests into a rate per minute and errors into a share, gaps staying gaps", () => {
    const [xs, rate, errors] = trafficData(series);
    expect(xs).toEqual([1796310000, 1796310030, 1796310060]);
    expect(rate).toEqual([40, 0, 20]);
    expect(errors).toEqual([5, null, 50]);
    expect(latencyData(series)[1]).toEqual([120, null, 80]);
  });

  it("give each model its cost per hour, zero where it had none", () => {
    const [, nano, mini] = costData(series);
    expect(nano).toEqual([0, 0, 0.002 * 120]);
    expect(mini).toEqual([0.01 * 120, 0, 0]);
  });

  it("name the time range behind a point", () => {
    expect(bucketRange(trafficData(series)[0], 2, 30)).toEqual({
      since: "2026-12-03T15:01:00.000Z",
      until: "2026-12-03T15:01:30.000Z",
    });
  });

  it("draw each compare group's distribution over the percentiles", () => {
    const group = { name: "60", n: 40, p50_ms: 1, p95_ms: 2, cost_per_request: 0, tokens_per_request: 0, error_rate: 0, hallucination_rate: null };
    const [steps, first] = distributionData([{ ...group, latency_quantiles_ms: Array.from({ length: 21 }, (_, i) => i * 10) }]);
    expect(steps[0]).toBe(0);
    expect(steps[20]).toBe(100);
    expect(first[20]).toBe(200);
  });
});

describe("the words around them", () => {
  const quality: QualityAnswer = {
    window: series.window,
    bucket_seconds: 60,
    buckets: [
      { start: "2026-12-03T15:00:00Z", answers: 30, hallucinated: 1, hallucination_rate: 1 / 30, scores: {}, feedback: 0.9, feedback_count: 3 },
      { start: "2026-12-03T15:01:00Z", answers: 0, hallucinated: 0, hallucination_rate: null, scores: {}, feedback: null, feedback_count: 0 },
    ],
    drop: null,
    boundaries_tried: 0,
    changes: [],
  };

  it("say when quality dropped, or why nothing can be said", () => {
    expect(qualityData(quality)[1]).toEqual([100 / 30, null]);
    expect(qualityVerdict(quality)).toMatch(/^Not enough answers to tell/);
    expect(qualityVerdict({ ...quality, boundaries_tried: 4 })).toBe("No drop detected (4 bucket boundaries with enough answers tried).");
    const dropped = {
      ...quality,
      drop: { at: "2026-12-03T15:01:00Z", before_rate: 0.04, after_rate: 0.231, before_answers: 300, after_answers: 200, p_value: 1e-6, confidence: 0.999999 },
    };
    expect(qualityVerdict(dropped)).toMatch(/^Quality dropped at .*: hallucination 4\.0% → 23\.1% \(n=300 before, 200 after\), confidence 100\.0%$/);
  });

  it("put the health figures in reading order", () => {
    const health: HealthAnswer = {
      status: "DEGRADED",
      reasons: ["hallucinations 12.0% of 50 answers (over 10 %)"],
      window: series.window,
      requests: 600,
      requests_per_minute: 40,
      errors: 6,
      error_rate: 0.01,
      routes: [{ service: "rag", route: "/query", requests: 500, p95_ms: 812.4 }],
      answers: 50,
      hallucinations: 6,
      hallucination_rate: 0.12,
      cost_per_hour_usd: 0.25,
      freshness_s: 4,
    };
    expect(healthFigures(health)).toEqual([
      ["Requests", "40.0/min"],
      ["Errors", "1.0%"],
      ["Slowest p95", "/query 812 ms"],
      ["Hallucinations", "12.0%"],
      ["Cost", "$0.2500/h"],
      ["Newest row", "4 s ago"],
    ]);
    expect(healthFigures({ ...health, freshness_s: null, routes: [] })[5]).toEqual(["Newest row", "over a day ago"]);
  });
});

describe("the pages' addresses", () => {
  it("read the window of the overview and the question of the compare page", () => {
    expect(windowFromUrl("?since=2026-12-03T15:00:00Z&until=2026-12-03T16:00:00Z")).toEqual({
      since: "2026-12-03T15:00:00Z",
      until: "2026-12-03T16:00:00Z",
    });
    expect(windowFromUrl("")).toEqual({ since: "-24h", until: undefined });
    expect(compareQuery("?by=gen_ai.request.model&since=-2h&evil=1")).toEqual({ by: "gen_ai.request.model", since: "-2h" });
    expect(compareQuery("?before=15:00")).toEqual({ before: "15:00" });
    expect(compareQuery("")).toEqual({ by: "rag.chunk.size" });
  });
});
