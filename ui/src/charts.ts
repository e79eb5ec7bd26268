// The pictures' data: the debug API's answers turned into uPlot's columns (x in seconds), and the words around them.

import type uPlot from "uplot";
import type { CompareGroup, HealthAnswer, QualityAnswer, SeriesAnswer } from "./types";

type AlignedData = uPlot.AlignedData;

export const seconds = (iso: string): number => Date.parse(iso) / 1000;

/** Requests per minute and the share that failed (%), per bucket. */
export function trafficData(series: SeriesAnswer): AlignedData {
  const perMinute = 60 / series.bucket_seconds;
  return [
    series.points.map((p) => seconds(p.start)),
    series.points.map((p) => p.requests * perMinute),
    series.points.map((p) => (p.requests ? (100 * p.errors) / p.requests : null)),
  ];
}

/** p95 of the requests per bucket (ms); empty buckets are gaps, not zeros. */
export function latencyData(series: SeriesAnswer): AlignedData {
  return [series.points.map((p) => seconds(p.start)), series.points.map((p) => p.p95_ms)];
}

/** Cost per hour of each model ($/h), one column per model in `series.models` order. */
export function costData(series: SeriesAnswer): AlignedData {
  const perHour = 3600 / series.bucket_seconds;
  return [
    series.points.map((p) => seconds(p.start)),
    ...series.models.map((model) => series.points.map((p) => (p.cost_usd[model] ?? 0) * perHour)),
  ];
}

/** Hallucination rate (%) and mean user feedback (0..1 as %) per bucket. */
export function qualityData(quality: QualityAnswer): AlignedData {
  return [
    quality.buckets.map((b) => seconds(b.start)),
    quality.buckets.map((b) => (b.hallucination_rate === null ? null : 100 * b.hallucination_rate)),
    quality.buckets.map((b) => (b.feedback === null ? null : 100 * b.feedback)),
  ];
}

/** The quality command's own answer, in one line. */
export function qualityVerdict(quality: QualityAnswer): string {
  const drop = quality.drop;
  if (drop) {
    const percent = (rate: number) => `${(100 * rate).toFixed(1)}%`;
    return (
      `Quality dropped at ${new Date(drop.at).toLocaleString(undefined, { hour12: false })}: hallucination ` +
      `${percent(drop.before_rate)} → ${percent(drop.after_rate)} (n=${drop.before_answers} before, ` +
      `${drop.after_answers} after), confidence ${(100 * drop.confidence).toFixed(1)}%`
    );
  }
  if (quality.boundaries_tried === 0) return "Not enough answers to tell (fewer than 20 on each side of every boundary).";
  return `No drop detected (${quality.boundaries_tried} bucket boundaries with enough answers tried).`;
}

/** A compare group's latency distribution: x the percentile (0, 5, ..., 100), one column per group. */
export function distributionData(groups: CompareGroup[]): AlignedData {
  const steps = Array.from({ length: 21 }, (_, index) => index * 5);
  return [steps, ...groups.map((group) => steps.map((_, index) => group.latency_quantiles_ms[index] ?? null))];
}

/** The time range of point `index` of a chart whose buckets are `bucketSeconds` long: ISO since and until. */
export function bucketRange(xs: ArrayLike<number>, index: number, bucketSeconds: number): { since: string; until: string } {
  const start = xs[index];
  return {
    since: new Date(start * 1000).toISOString(),
    until: new Date((start + bucketSeconds) * 1000).toISOString(),
  };
}

export function percent(value: number | null, digits = 1): string {
  return value === null ? "—" : `${(100 * value).toFixed(digits)}%`;
}

/** The health strip's figures: label and value, in reading order. */
export function healthFigures(health: HealthAnswer): Array<[string, string]> {
  const worst = health.routes.length ? health.routes[0] : null; // the API lists the slowest route first
  const age = health.freshness_s;
  return [
    ["Requests", `${health.requests_per_minute.toFixed(1)}/min`],
    ["Errors", percent(health.error_rate)],
    ["Slowest p95", worst ? `${worst.route} ${Math.round(worst.p95_ms)} ms` : "—"],
    ["Hallucinations", percent(health.hallucination_rate)],
    ["Cost", `$${health.cost_per_hour_usd.toFixed(4)}/h`],
    ["Newest row", age === null ? "over a day ago" : age < 120 ? `${Math.round(age)} s ago` : `${Math.round(age / 60)} min ago`],
  ];
}

/** Colours of the series, in order (colour-blind-safe Tableau 10). */
export const COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#9d755d"];
