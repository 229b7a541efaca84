// Charts of an experiment's metrics for chosen runs, and the controls they share.
import { useEffect, useMemo, useState } from "preact/hooks";
import { arrow, type Iteration, items } from "../api";
import { Chart, type ChartOptions, type ChartRun, color, type XMode } from "../chart";
import { ErrorBox, Loading } from "../common";
import { useLoad } from "../hooks";
import { Link, setQuery } from "../nav";
import { listParam } from "../route";
import { withAsOf } from "../asof";
import { SYSTEM_GROUP, systemKeys, trainingKeys } from "../media";

const SYSTEM_ONLY = [SYSTEM_GROUP];

export interface MetricName {
  key: string;
  group: string;
  iterations: number;
  points: number;
}

/** One chart per key (its groups are lines of that chart), in the server's order. */
export function chartKeys(names: MetricName[]): string[] {
  return [...new Set(names.map((m) => m.key))];
}

export function chartOptions(query: URLSearchParams): ChartOptions {
  const x = query.get("x");
  return {
    xMode: x === "wall" || x === "relative" ? (x as XMode) : "step",
    logY: query.get("log") === "1",
    smoothing: Math.min(0.99, Math.max(0, Number(query.get("smooth") ?? 0) || 0)),
  };
}

export function ChartControls({ options, search }: { options: ChartOptions; search?: string }) {
  return (
    <div class="toolbar chart-controls">
      {search !== undefined && (
        <input type="search" aria-label="find a metric" placeholder="find a metric" value={search} onInput={(e) => setQuery({ q: (e.target as HTMLInputElement).value })} />
      )}
      <label>
        x axis{" "}
        <select aria-label="x axis" value={options.xMode} onChange={(e) => setQuery({ x: (e.target as HTMLSelectElement).value === "step" ? null : (e.target as HTMLSelectElement).value })}>
          <option value="step">step</option>
          <option value="wall">wall time</option>
          <option value="relative">relative time</option>
        </select>
      </label>
      <label>
        <input type="checkbox" checked={options.logY} onChange={() => setQuery({ log: options.logY ? null : "1" })} /> log scale
      </label>
      <label>
        smoothing{" "}
        <input type="range" min="0" max="0.99" step="0.01" aria-label="smoothing" value={options.smoothing} onChange={(e) => setQuery({ smooth: (e.target as HTMLInputElement).value === "0" ? null : (e.target as HTMLInputElement).value })} />{" "}
        <span class="muted">{options.smoothing.toFixed(2)}</span>
      </label>
    </div>
  );
}

/** The chosen runs with their names, from one read of the runs table. */
export async function runsNamed(experimentId: string, ids: string[], asOf: string, signal: AbortSignal): Promise<ChartRun[]> {
  const filter = `iteration_id IN (${ids.map((id) => `'${id.replace(/'/g, "''")}'`).join(", ")})`;
  const { numRows, columns } = await arrow(`/experiments/${experimentId}/runs-table`, { filter, as_of: asOf || undefined }, signal);
  const names = new Map<string, string>();
  for (let i = 0; i < numRows; i++) names.set((columns.iteration_id as ArrayLike<string>)[i], (columns.name as ArrayLike<string>)[i]);
  return ids.filter((id) => names.has(id)).map((id) => ({ id, label: names.get(id) || id.slice(0, 8) }));
}

export function ChartGrid({ runs, metrics, options, asOf = "", groups }: { runs: ChartRun[]; metrics: string[]; options: ChartOptions; asOf?: string; groups?: string[] }) {
  return (
    <div class="chart-grid">
      {metrics.map((m) => (
        <Chart key={m} runs={runs} metric={m} options={options} asOf={asOf} groups={groups} />
      ))}
    </div>
  );
}

export function RunLegend({ runs, asOf = "" }: { runs: ChartRun[]; asOf?: string }) {
  return (
    <ul class="legend">
      {runs.map((r, i) => (
        <li key={r.id}>
          <span class="swatch" style={{ background: color(i) }} /> <Link href={withAsOf(`/r/${r.id}`, asOf)}>{r.label}</Link>
        </li>
      ))}
      <li class="muted">a metric's groups (train/val): dashed lines of the run's color</li>
    </ul>
  );
}

export function ExperimentCharts({ experimentId, query, asOf = "" }: { experimentId: string; query: URLSearchParams; asOf?: string }) {
  const chosen = listParam(query.get("runs"));
  const options = chartOptions(query);
  const search = query.get("q") ?? "";
  const names = useLoad((signal) => items<MetricName>(`/experiments/${experimentId}/metric-names`, { as_of: asOf || undefined }, signal), [experimentId, asOf]);
  const runs = useLoad(
    async (signal) => {
      if (chosen.length) return runsNamed(experimentId, chosen.slice(0, 50), asOf, signal);
      const latest = await items<Iteration>("/iterations", { experiment_id: experimentId, limit: 10, order_by: "created_at DESC", as_of: asOf || undefined }, signal);
      return latest.map((it) => ({ id: it.iteration_id, label: it.name || it.iteration_id.slice(0, 8) }));
    },
    [experimentId, chosen.join(","), asOf],
  );
  const found = (k: string) => k.toLowerCase().includes(search.toLowerCase());
  // the "system" group (CPU, memory, I/O, GPU) has a section of its own, after training's
  const metrics = useMemo(() => trainingKeys(names.data ?? []).filter(found), [names.data, search]);
  const system = useMemo(() => systemKeys(names.data ?? []).filter(found), [names.data, search]);
  const [shownCount, setShown] = useState(60);
  useEffect(() => setShown(60), [search]);
  return (
    <section>
      <ChartControls options={options} search={search} />
      <ErrorBox error={names.error ?? runs.error} />
      <Loading when={names.loading || runs.loading} />
      {runs.data && (
        <p class="muted">
          {chosen.length ? "Selected runs" : "The 10 latest runs (select runs in the table to choose)"}: {runs.data.length}; {metrics.length} metrics. Drag across a chart to zoom
          (re-fetched at full resolution), double-click to reset.
        </p>
      )}
      {runs.data && <RunLegend runs={runs.data} asOf={asOf} />}
      {runs.data && <ChartGrid runs={runs.data} metrics={metrics.slice(0, shownCount)} options={options} asOf={asOf} />}
      {metrics.length > shownCount && (
        <button type="button" onClick={() => setShown(shownCount + 60)}>
          more charts ({metrics.length - shownCount} left)
        </button>
      )}
      {runs.data && system.length > 0 && metrics.length <= shownCount && (
        <section class="system-charts" aria-label="system metrics">
          <h2>System</h2>
          <ChartGrid runs={runs.data} metrics={system} options={options} asOf={asOf} groups={SYSTEM_ONLY} />
        </section>
      )}
    </section>
  );
}
