// Line charts of metric series with uPlot (canvas). A chart fetches its series only
// when it scrolls into view, asks the server for about one min/max pair per pixel of
// its width (max_points = the width in pixels), and a zoom (drag across the plot) re-fetches the selected step window at
// full resolution; a double click goes back to the whole series.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { arrow } from "./api";
import { align, smooth, type Series } from "./series";

export type XMode = "step" | "wall" | "relative";

export interface ChartRun {
  id: string;
  label: string;
}

export interface ChartOptions {
  xMode: XMode;
  logY: boolean;
  smoothing: number;
}

const PALETTE = [
  "#3a6df0", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#f08c00", "#5c940d",
  "#d6336c", "#1971c2", "#ae3ec9", "#099268", "#e67700", "#364fc7", "#a61e4d", "#2b8a3e",
];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}

interface Fetched {
  runs: ChartRun[];
  series: { step: Float64Array; value: Float64Array; at: Float64Array }[];
}

async function fetchSeries(
  runs: ChartRun[],
  key: string,
  maxPoints: number,
  window: [number, number] | null,
  signal: AbortSignal,
): Promise<Fetched> {
  const { numRows, columns } = await arrow(
    "/compare",
    {
      iteration_id: runs.map((r) => r.id),
      key: [key],
      max_points: maxPoints,
      min_step: window ? Math.floor(window[0]) : undefined,
      max_step: window ? Math.ceil(window[1]) : undefined,
    },
    signal,
  );
  const ids = columns.iteration_id as ArrayLike<string>;
  const steps = columns.step as ArrayLike<number>;
  const values = columns.value as ArrayLike<number>;
  const ats = columns.recorded_at as ArrayLike<number>;
  const byRun = new Map<string, number[]>();
  for (let i = 0; i < numRows; i++) {
    let rows = byRun.get(ids[i]);
    if (!rows) byRun.set(ids[i], (rows = []));
    rows.push(i);
  }
  return {
    runs,
    series: runs.map((r) => {
      const rows = byRun.get(r.id) ?? [];
      return {
        step: Float64Array.from(rows, (i) => steps[i]),
        value: Float64Array.from(rows, (i) => values[i]),
        at: Float64Array.from(rows, (i) => ats[i]),
      };
    }),
  };
}

function toData(f: Fetched, o: ChartOptions): uPlot.AlignedData {
  const series: Series[] = f.series.map((s, i) => {
    let x: Float64Array;
    if (o.xMode === "step") x = s.step;
    else if (o.xMode === "wall") x = s.at.map((t) => t / 1000);
    else {
      const first = s.at.length ? Math.min(...s.at) : 0;
      x = s.at.map((t) => (t - first) / 1000);
    }
    const y = o.smoothing > 0 ? Float64Array.from(smooth(s.value, o.smoothing), (v) => v ?? NaN) : s.value;
    return { label: f.runs[i].label, x, y };
  });
  return align(series) as uPlot.AlignedData;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function Chart({
  runs,
  metric,
  options,
  height = 220,
}: {
  runs: ChartRun[];
  metric: string;
  options: ChartOptions;
  height?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [visible, setVisible] = useState(false);
  const [zoom, setZoom] = useState<[number, number] | null>(null);
  const [fetched, setFetched] = useState<Fetched | null>(null);
  const [error, setError] = useState<string | null>(null);
  const runKey = runs.map((r) => r.id).join(",");

  useEffect(() => {
    const el = box.current!;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        setVisible(true);
        io.disconnect();
      }
    }, { rootMargin: "200px" });
    io.observe(el);
    return () => io.disconnect();
  }, []);

  useEffect(() => setZoom(null), [runKey, metric, options.xMode]);

  useEffect(() => {
    if (!visible || runs.length === 0) return;
    const abort = new AbortController();
    const width = Math.max(100, box.current!.clientWidth);
    const window = options.xMode === "step" ? zoom : null;
    fetchSeries(runs, metric, Math.round(width), window, abort.signal).then(
      (f) => {
        setError(null);
        setFetched(f);
      },
      (e: Error) => e.name !== "AbortError" && setError(e.message),
    );
    return () => abort.abort();
  }, [visible, runKey, metric, zoom, options.xMode]);

  useEffect(() => {
    if (!fetched || !box.current) return;
    const el = box.current;
    const data = toData(fetched, options);
    const fg = cssVar("--muted", "#666");
    const grid = cssVar("--grid", "#8882");
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const time = options.xMode === "wall";
    const opts: uPlot.Options = {
      width: Math.max(100, el.clientWidth),
      height,
      scales: {
        x: { time, ...(zoom && options.xMode !== "step" ? { min: zoom[0], max: zoom[1] } : {}) },
        y: { distr: options.logY ? 3 : 1 },
      },
      axes: [
        { ...axis, label: options.xMode === "step" ? "step" : time ? undefined : "seconds" },
        { ...axis, size: 60 },
      ],
      legend: { show: runs.length <= 12, live: true },
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [
        { label: options.xMode },
        ...fetched.runs.map((r, i) => ({
          label: r.label,
          stroke: color(i),
          width: 1.5,
          spanGaps: true,
          points: { show: false },
        })),
      ],
      hooks: {
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 3) return;
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            setZoom([lo, hi]);
          },
        ],
      },
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const over = el.querySelector(".u-over");
    const reset = () => setZoom(null);
    over?.addEventListener("dblclick", reset);
    return () => over?.removeEventListener("dblclick", reset);
  }, [fetched, options.logY, options.smoothing, options.xMode, height]);

  useEffect(() => () => plot.current?.destroy(), []);

  useEffect(() => {
    if (!box.current) return;
    const ro = new ResizeObserver(() => {
      if (plot.current && box.current) plot.current.setSize({ width: box.current.clientWidth, height });
    });
    ro.observe(box.current);
    return () => ro.disconnect();
  }, [height]);

  const points = fetched?.series.reduce((n, s) => n + s.step.length, 0) ?? 0;
  return (
    <figure class="chart" data-metric={metric} data-points={points} data-drawn={fetched ? "1" : "0"}>
      <figcaption>
        <span class="chart-title">{metric}</span>
        {zoom && (
          <button type="button" class="small" onClick={() => setZoom(null)}>
            reset zoom
          </button>
        )}
        {error && <span class="error-inline">{error}</span>}
      </figcaption>
      <div ref={box} class="chart-box" style={{ minHeight: `${height + (runs.length <= 12 ? 30 : 0)}px` }} />
    </figure>
  );
}
