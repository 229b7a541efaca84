// Sweep views: parallel coordinates (params -> a metric), a scatter of one param
// against the metric, and the best-so-far curve over trial order.
import uPlot from "uplot";
import { useEffect, useMemo, useRef } from "preact/hooks";
import { arrow, items } from "../api";
import { ErrorBox, Loading } from "../common";
import { fmtNumber } from "../format";
import { useLoad } from "../hooks";
import { setQuery } from "../nav";
import { axisScale, bestSoFar, categories, defaultGoal, type Goal, numericValues } from "../series";
import { type CatalogEntry, metricColumn } from "../table";

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** Blue (best) to orange (worst). */
function shade(t: number): string {
  const a = [58, 109, 240];
  const b = [232, 89, 12];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * t));
  return `rgba(${c[0]},${c[1]},${c[2]},0.55)`;
}

function ParallelCoordinates({ axes, values, metric, name, goal }: { axes: string[]; values: (string | null)[][]; metric: (number | null)[]; name: string; goal: "min" | "max" }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const el = canvas.current!;
    const width = el.parentElement!.clientWidth;
    const height = 360;
    const dpr = devicePixelRatio || 1;
    el.width = width * dpr;
    el.height = height * dpr;
    el.style.width = `${width}px`;
    el.style.height = `${height}px`;
    const g = el.getContext("2d")!;
    g.scale(dpr, dpr);
    g.clearRect(0, 0, width, height);
    const n = axes.length + 1;
    const pad = 60;
    const x = (i: number) => pad + ((width - 2 * pad) * i) / Math.max(1, n - 1);
    const top = 30;
    const bottom = height - 30;
    const scales = values.map((col) => axisScale(col));
    const finite = metric.filter((v): v is number => v !== null && Number.isFinite(v));
    const lo = Math.min(...finite);
    const hi = Math.max(...finite);
    const mScale = (v: number | null) => (v === null || !Number.isFinite(v) ? null : hi === lo ? 0.5 : (v - lo) / (hi - lo));
    const rows = metric.length;
    g.lineWidth = 1.2;
    for (let r = 0; r < rows; r++) {
      const m = mScale(metric[r]);
      if (m === null) continue;
      g.strokeStyle = shade(goal === "min" ? m : 1 - m);
      g.beginPath();
      let started = false;
      for (let a = 0; a < n; a++) {
        const t = a < axes.length ? scales[a](values[a][r]) : m;
        if (t === null) {
          started = false;
          continue;
        }
        const y = bottom - t * (bottom - top);
        if (started) g.lineTo(x(a), y);
        else g.moveTo(x(a), y);
        started = true;
      }
      g.stroke();
    }
    g.strokeStyle = cssVar("--fg", "#222");
    g.fillStyle = cssVar("--fg", "#222");
    g.font = "12px system-ui, sans-serif";
    g.textAlign = "center";
    for (let a = 0; a < n; a++) {
      g.beginPath();
      g.moveTo(x(a), top);
      g.lineTo(x(a), bottom);
      g.stroke();
      g.fillText(a < axes.length ? axes[a] : name, x(a), top - 10);
      if (a < axes.length) {
        const col = values[a];
        if (numericValues(col)) {
          const nums = col.filter((v) => v !== null && v !== "").map(Number);
          g.fillText(fmtNumber(Math.max(...nums)), x(a), top + 18);
          g.fillText(fmtNumber(Math.min(...nums)), x(a), bottom + 16);
        } else {
          // a categorical axis: each category's name at its place (every k-th when many)
          const cats = categories(col);
          const every = Math.max(1, Math.ceil(cats.length / Math.max(2, Math.floor((bottom - top) / 16))));
          g.textAlign = "left";
          g.font = "11px system-ui, sans-serif";
          cats.forEach((cat, i) => {
            if (i % every !== 0 && i !== cats.length - 1) return;
            const t = cats.length <= 1 ? 0.5 : i / (cats.length - 1);
            const label = cat.length > 14 ? `${cat.slice(0, 13)}…` : cat;
            g.fillText(label, x(a) + 5, bottom - t * (bottom - top) + 4);
          });
          g.textAlign = "center";
          g.font = "12px system-ui, sans-serif";
        }
      } else if (finite.length) {
        g.fillText(fmtNumber(hi), x(a), top + 18);
        g.fillText(fmtNumber(lo), x(a), bottom + 16);
      }
    }
  }, [axes, values, metric, name, goal]);
  const labels = axes.map((name, a) => (numericValues(values[a]) ? null : `${name}: ${categories(values[a]).join(", ")}`)).filter(Boolean);
  return (
    <canvas ref={canvas} class="parallel" data-drawn="1" aria-label={`parallel coordinates of ${axes.join(", ")} against the metric`}>
      {labels.join("; ")}
    </canvas>
  );
}

function Plot({ data, series, xLabel, yLabel, points }: { data: uPlot.AlignedData; series: uPlot.Series[]; xLabel: string; yLabel: string; points: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current!;
    const fg = cssVar("--muted", "#666");
    const grid = cssVar("--grid", "#8882");
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const plot = new uPlot(
      {
        width: el.clientWidth,
        height: 280,
        scales: { x: { time: false } },
        axes: [{ ...axis, label: xLabel }, { ...axis, label: yLabel, size: 60 }],
        series: [{ label: xLabel }, ...series.map((s) => (points ? { ...s, paths: () => null, points: { show: true, size: 6, fill: s.stroke as string } } : s))],
      },
      data,
      el,
    );
    return () => plot.destroy();
  }, [data, series, xLabel, yLabel, points]);
  return <div ref={box} class="chart-box" />;
}

export function Sweep({ experimentId, query, asOf = "" }: { experimentId: string; query: URLSearchParams; asOf?: string }) {
  const catalog = useLoad((signal) => items<CatalogEntry>(`/experiments/${experimentId}/columns`, { as_of: asOf || undefined }, signal), [experimentId, asOf]);
  const params = (catalog.data ?? []).filter((c) => c.kind === "param").map((c) => c.key);
  const series = (catalog.data ?? []).filter((c) => c.kind === "metric").map((c) => ({ key: c.key, group: c.group ?? "" }));
  const metric = query.get("metric") ?? series[0]?.key ?? "";
  const group = query.get("mgroup") ?? (query.get("metric") ? "" : (series[0]?.group ?? ""));
  const shownMetric = group ? `${metric} · ${group}` : metric;
  const goal: Goal = query.get("goal") === "max" ? "max" : query.get("goal") === "min" ? "min" : defaultGoal(metric);
  const agg = query.get("agg") === "last" ? "last" : goal;
  const param = query.get("param") ?? params[0] ?? "";
  const column = metricColumn(metric, group, agg);
  const table = useLoad(
    async (signal) => {
      if (!metric) return null;
      return arrow(`/experiments/${experimentId}/runs-table`, { columns: [...params.slice(0, 60).map((p) => `params.${p}`), column], as_of: asOf || undefined }, signal);
    },
    [experimentId, column, params.join("\n"), asOf],
  );
  const view = useMemo(() => {
    if (!table.data) return null;
    const { columns, numRows } = table.data;
    const m = Array.from(columns[column] as ArrayLike<number | null>, (v) => (v === null || Number.isNaN(v) ? null : v));
    const shownParams = params.slice(0, 60).filter((p) => columns[`params.${p}`]);
    const values = shownParams.map((p) => Array.from(columns[`params.${p}`] as ArrayLike<string | null>));
    const names = Array.from(columns.name as ArrayLike<string>);
    return { n: numRows, m, params: shownParams, values, names };
  }, [table.data]);
  const scatter = useMemo(() => {
    if (!view || !param) return null;
    const i = view.params.indexOf(param);
    if (i < 0) return null;
    const col = view.values[i];
    const numeric = numericValues(col);
    const cats = [...new Set(col.filter((v): v is string => v !== null))].sort();
    const pairs = col
      .map((v, r) => [v === null ? null : numeric ? Number(v) : cats.indexOf(v), view.m[r]] as const)
      .filter((p): p is readonly [number, number] => p[0] !== null && p[1] !== null)
      .sort((a, b) => a[0] - b[0]);
    return [pairs.map((p) => p[0]), pairs.map((p) => p[1])] as uPlot.AlignedData;
  }, [view, param]);
  const best = useMemo(() => {
    if (!view) return null;
    const trials = view.m.map((_, i) => i + 1);
    return [trials, view.m, bestSoFar(view.m, goal)] as uPlot.AlignedData;
  }, [view, goal]);
  const select = (name: string, value: string, options: string[], label: string) => (
    <label>
      {label}{" "}
      <select aria-label={label} value={value} onChange={(e) => setQuery({ [name]: (e.target as HTMLSelectElement).value })}>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <section class="sweep">
      <ErrorBox error={catalog.error ?? table.error} />
      <Loading when={catalog.loading || table.loading} />
      <div class="toolbar">
        <label>
          metric{" "}
          <select
            aria-label="metric"
            value={String(series.findIndex((m) => m.key === metric && m.group === group))}
            onChange={(e) => {
              const chosen = series[Number((e.target as HTMLSelectElement).value)];
              if (chosen) setQuery({ metric: chosen.key, mgroup: chosen.group || null, goal: null });
            }}
          >
            {series.map((m, i) => (
              <option key={`${m.group}/${m.key}`} value={String(i)}>
                {m.group ? `${m.key} · ${m.group}` : m.key}
              </option>
            ))}
          </select>
        </label>
        {select("goal", goal, ["min", "max"], "goal")}
        {select("agg", agg === goal ? "best" : "last", ["best", "last"], "value")}
        {select("param", param, params, "scatter param")}
      </div>
      {view && view.n > 0 && (
        <>
          <h2>Parallel coordinates</h2>
          <ParallelCoordinates axes={view.params} values={view.values} metric={view.m} name={shownMetric} goal={goal} />
          <div class="two">
            <div>
              <h2>
                {param} vs {shownMetric}
              </h2>
              {scatter && <Plot data={scatter} series={[{ label: shownMetric, stroke: "#3a6df0" }]} xLabel={param} yLabel={shownMetric} points />}
            </div>
            <div>
              <h2>Best so far ({goal})</h2>
              {best && (
                <Plot
                  data={best}
                  series={[
                    { label: `${shownMetric} (each trial)`, stroke: "#adb5bd", paths: () => null, points: { show: true, size: 5, fill: "#adb5bd" } },
                    { label: "best so far", stroke: "#2f9e44", width: 2 },
                  ]}
                  xLabel="trial"
                  yLabel={shownMetric}
                  points={false}
                />
              )}
            </div>
          </div>
        </>
      )}
      {view && view.n === 0 && <p class="muted">No runs yet.</p>}
      {!metric && catalog.data && <p class="muted">No metrics logged yet.</p>}
    </section>
  );
}
