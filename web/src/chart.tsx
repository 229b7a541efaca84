// Line charts of metric series with uPlot (canvas). A chart fetches its series only
// when it scrolls into view -- together with the other charts coming into view (one
// request, batch.ts) -- asks the server for one min/max pair per two pixels of its width
// (max_points = the width in pixels), draws each group of the metric (train/val) as its
// own line (the run's color, the group's dash), and a zoom (drag across the plot)
// re-fetches the selected step window at full resolution; a double click goes back.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { type SeriesRows, seriesOf } from "./batch";
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
  series: SeriesRows["series"];
}

async function fetchSeries(
  runs: ChartRun[],
  key: string,
  maxPoints: number,
  window: [number, number] | null,
  asOf: string,
  signal: AbortSignal,
  groups: string[],
): Promise<Fetched> {
  const rows = await seriesOf(
    runs.map((r) => r.id),
    key,
    maxPoints,
    window,
    asOf,
    signal,
    groups,
  );
  return { runs, series: rows.series };
}

/** Dashes per group: the default group solid, the others dashed (train/val apart). */
const DASHES: (number[] | undefined)[] = [undefined, [6, 4], [2, 3], [10, 3, 2, 3], [1, 5]];

/** Each (run, group) line: its label, color (the run's) and dash (the group's). */
export function lineStyles(f: Fetched): { label: string; stroke: string; dash: number[] | undefined }[] {
  const groups = [...new Set(f.series.map((s) => s.group))].sort();
  const runIndex = new Map(f.runs.map((r, i) => [r.id, i]));
  const label = new Map(f.runs.map((r) => [r.id, r.label]));
  return f.series.map((s) => ({
    label: groups.length > 1 || s.group ? `${label.get(s.run) ?? s.run.slice(0, 8)} · ${s.group || "default"}` : (label.get(s.run) ?? s.run.slice(0, 8)),
    stroke: color(runIndex.get(s.run) ?? 0),
    dash: DASHES[groups.indexOf(s.group) % DASHES.length],
  }));
}

function toData(f: Fetched, o: ChartOptions): uPlot.AlignedData {
  const series: Series[] = f.series.map((s) => {
    let x: Float64Array;
    if (o.xMode === "step") x = s.step;
    else if (o.xMode === "wall") x = s.at.map((t) => t / 1000);
    else {
      let first = Infinity;
      for (const t of s.at) if (t < first) first = t;
      x = s.at.map((t) => (t - first) / 1000);
    }
    const y = o.smoothing > 0 ? Float64Array.from(smooth(s.value, o.smoothing), (v) => v ?? NaN) : s.value;
    return { label: s.run, x, y };
  });
  return align(series) as uPlot.AlignedData;
}

/**
 * Charts are built in turns, one per animation frame (uPlot draws it in that frame's
 * task), so a page of charts whose data arrives at once never holds the main thread
 * long (no long tasks: scrolling and typing stay responsive while they draw).
 */
const turns: { live: boolean; build: () => void }[] = [];
let turning = false;

function inTurn(build: () => void): () => void {
  const turn = { live: true, build };
  turns.push(turn);
  if (!turning) {
    turning = true;
    requestAnimationFrame(runTurns);
  }
  return () => {
    turn.live = false;
  };
}

function runTurns(): void {
  let turn = turns.shift();
  while (turn && !turn.live) turn = turns.shift(); // gone meanwhile: no frame spent
  turn?.build();
  if (turns.length) requestAnimationFrame(runTurns);
  else turning = false;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

const NO_GROUPS: string[] = [];

export function Chart({
  runs,
  metric,
  options,
  asOf = "",
  height = 220,
  groups = NO_GROUPS,
}: {
  runs: ChartRun[];
  metric: string;
  options: ChartOptions;
  asOf?: string;
  height?: number;
  /** only these groups of the metric (the System tab: ["system"]); default every group */
  groups?: string[];
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

  useEffect(() => setZoom(null), [runKey, metric, options.xMode, asOf]);

  useEffect(() => {
    if (!visible || runs.length === 0) return;
    const abort = new AbortController();
    const width = Math.max(100, box.current!.clientWidth);
    const window = options.xMode === "step" ? zoom : null;
    fetchSeries(runs, metric, Math.round(width), window, asOf, abort.signal, groups).then(
      (f) => {
        setError(null);
        setFetched(f);
      },
      (e: Error) => e.name !== "AbortError" && setError(e.message),
    );
    return () => abort.abort();
  }, [visible, runKey, metric, zoom, options.xMode, asOf, groups.join(",")]);

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
      legend: { show: fetched.series.length <= 12, live: true },
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [
        { label: options.xMode },
        ...lineStyles(fetched).map((line) => ({
          label: line.label,
          stroke: line.stroke,
          dash: line.dash,
          width: 1.5,
          spanGaps: true,
          points: { show: false },
        })),
      ],
      hooks: {
        draw: [
          () => {
            // drawn: for tests and the benchmark (a mark times it from navigation)
            const figure = el.parentElement;
            if (figure && figure.dataset.drawn !== "1") {
              figure.dataset.drawn = "1";
              performance.mark("chart-drawn", { detail: metric });
            }
          },
        ],
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
    const reset = () => setZoom(null);
    let over: Element | null = null;
    const cancel = inTurn(() => {
      plot.current?.destroy();
      plot.current = new uPlot(opts, data, el);
      over = el.querySelector(".u-over");
      over?.addEventListener("dblclick", reset);
    });
    return () => {
      cancel();
      over?.removeEventListener("dblclick", reset);
    };
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
  const drawnGroups = fetched ? [...new Set(fetched.series.map((s) => s.group))].sort().join(",") : "";
  return (
    <figure class="chart" data-metric={metric} data-points={points} data-lines={fetched?.series.length ?? 0} data-groups={drawnGroups}>
      <figcaption>
        <span class="chart-title">{metric}</span>
        {zoom && (
          <button type="button" class="small" onClick={() => setZoom(null)}>
            reset zoom
          </button>
        )}
        {error && <span class="error-inline">{error}</span>}
      </figcaption>
      <div ref={box} class="chart-box" style={{ minHeight: `${height + 30}px` }} />
    </figure>
  );
}
