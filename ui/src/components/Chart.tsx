// One chart (uPlot on a canvas): lines over time, optional vertical marks (a detected drop), a selected point.
// Click a point, or focus the chart and use the arrow keys (Home/End for the ends): `onSelect` gets its index, and
// the caption below says what the point holds, so the page works from the keyboard and for screen readers.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  colour: string;
  unit: string;
  /** "y" (the left axis, default) or "y2" (the right one) */
  scale?: "y" | "y2";
  digits?: number;
}

export interface ChartProps {
  title: string;
  data: uPlot.AlignedData;
  series: ChartSeries[];
  /** x is time in seconds (default), or a plain number (percentiles) */
  time?: boolean;
  xLabel?: string;
  marks?: number[];
  selected?: number | null;
  onSelect?: (index: number) => void;
  describe: (index: number) => string;
  /** a line under the title: what the chart answers (the quality drop) */
  note?: React.ReactNode;
  height?: number;
}

function format(value: number | null | undefined, series: ChartSeries): string {
  return value === null || value === undefined ? "—" : `${value.toFixed(series.digits ?? 1)} ${series.unit}`;
}

function axis(series: ChartSeries[], scale: "y" | "y2", side: 1 | 3): uPlot.Axis {
  const first = series.find((s) => (s.scale ?? "y") === scale);
  return {
    scale,
    side,
    label: first ? first.unit : undefined,
    labelSize: 18,
    size: 56,
    grid: { show: scale === "y" },
    stroke: "#5d6675",
  };
}

export function Chart(props: ChartProps) {
  const { title, data, series, time = true, marks = [], selected = null, onSelect, describe, height = 200 } = props;
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const drawn = useRef({ marks, selected });
  drawn.current = { marks, selected };
  const shape = series.map((s) => `${s.label}/${s.scale ?? "y"}`).join("|") + (time ? "t" : "n");

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const twoAxes = series.some((s) => s.scale === "y2");
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 240),
      height,
      scales: { x: { time } },
      series: [
        { label: props.xLabel ?? "time", value: time ? undefined : (_, v) => (v === null ? "—" : `${v}`) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.colour,
          width: 2,
          scale: s.scale ?? "y",
          spanGaps: false,
          points: { show: false },
          value: (_: uPlot, v: number | null) => format(v, s),
        })),
      ],
      axes: [{ stroke: "#5d6675", label: time ? undefined : props.xLabel }, axis(series, "y", 3), ...(twoAxes ? [axis(series, "y2", 1)] : [])],
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      hooks: {
        draw: [
          (u: uPlot) => {
            const { ctx, bbox } = u;
            const line = (x: number, colour: string, width: number) => {
              const left = u.valToPos(x, "x", true);
              if (left < bbox.left || left > bbox.left + bbox.width) return;
              ctx.save();
              ctx.strokeStyle = colour;
              ctx.lineWidth = width;
              ctx.beginPath();
              ctx.moveTo(left, bbox.top);
              ctx.lineTo(left, bbox.top + bbox.height);
              ctx.stroke();
              ctx.restore();
            };
            for (const mark of drawn.current.marks) line(mark, "#b3261e", 2 * devicePixelRatio);
            const index = drawn.current.selected;
            if (index !== null && index < u.data[0].length) line(u.data[0][index], "#f0a000", 3 * devicePixelRatio);
          },
        ],
      },
    };
    plot.current = new uPlot(options, data, element);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(element.clientWidth, 240), height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // the plot is rebuilt when its series change; data and marks are updated below
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height]);

  useEffect(() => plot.current?.setData(data), [data]);
  useEffect(() => plot.current?.redraw(false), [selected, marks.join(",")]);

  const points = data[0].length;
  const pick = (index: number) => {
    if (onSelect && points > 0) onSelect(Math.min(Math.max(index, 0), points - 1));
  };
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      {props.note}
      <div
        ref={holder}
        className="plot"
        tabIndex={onSelect ? 0 : undefined}
        role={onSelect ? "group" : "img"}
        aria-label={`${title}: ${onSelect ? "arrow keys choose a point" : "chart"}`}
        onClick={() => {
          const index = plot.current?.cursor.idx;
          if (index !== null && index !== undefined) pick(index);
        }}
        onKeyDown={(event) => {
          const from = selected ?? points - 1;
          const moves: Record<string, number> = { ArrowLeft: from - 1, ArrowRight: from + 1, Home: 0, End: points - 1 };
          if (event.key in moves) {
            event.preventDefault();
            pick(moves[event.key]);
          }
        }}
      />
      <p className="chart-point" aria-live="polite" data-testid="chart-point">
        {selected !== null && selected < points ? describe(selected) : onSelect ? "Click a point (or use the arrow keys) for the traces behind it." : ""}
      </p>
    </figure>
  );
}
