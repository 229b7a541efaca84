// N runs side by side: a params diff highlighting differing values, metric summaries with
// the best run per metric by its goal (min for a loss, max for an accuracy: a toggle per
// metric, kept in the URL), and overlays of every metric.
import { useState } from "preact/hooks";
import { withAsOf } from "../asof";
import { get, type Iteration, jsonValue } from "../api";
import { ErrorBox, Loading, Status } from "../common";
import { fmtDuration, fmtNumber } from "../format";
import { useLoad } from "../hooks";
import { Link, setQuery } from "../nav";
import { listParam } from "../route";
import { bestOf, defaultGoal, differingKeys, type Goal, parseGoals } from "../series";
import { ChartControls, ChartGrid, chartOptions, RunLegend } from "./charts";
import { trainingKeys } from "../media";

interface Row {
  key: string;
  group: string;
  values: (number | undefined)[];
}

/** Each run's last value of each (key, group) series, one row per series. */
function metricRows(runs: Iteration[]): Row[] {
  const rows = new Map<string, Row>();
  runs.forEach((it, i) => {
    const add = (key: string, group: string, value: unknown) => {
      const id = `${group}\u0000${key}`;
      let row = rows.get(id);
      if (!row) rows.set(id, (row = { key, group, values: new Array(runs.length).fill(undefined) }));
      row.values[i] = typeof value === "number" ? value : typeof value === "string" ? Number(value) : undefined;
    };
    for (const [k, v] of Object.entries(jsonValue<Record<string, unknown>>(it.metrics, {}))) add(k, "", v);
    const grouped = jsonValue<Record<string, Record<string, unknown>>>(it.group_metrics, {});
    for (const [g, series] of Object.entries(grouped)) for (const [k, v] of Object.entries(series)) add(k, g, v);
  });
  return [...rows.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
}

export function Compare({ experimentId, query, asOf = "" }: { experimentId: string; query: URLSearchParams; asOf?: string }) {
  const ids = listParam(query.get("runs"));
  const options = chartOptions(query);
  const goals = parseGoals(query.get("goals"));
  const [onlyDiff, setOnlyDiff] = useState(false);
  const { data, error, loading } = useLoad(
    (signal) => Promise.all(ids.slice(0, 50).map((id) => get<Iteration>(`/iterations/${id}`, { as_of: asOf || undefined }, signal))),
    [ids.join(","), asOf],
  );
  if (ids.length === 0) return <p class="muted">Select runs in the table, then Compare.</p>;
  const params = (data ?? []).map((it) => jsonValue<Record<string, string>>(it.params, {}));
  const differing = differingKeys(params);
  const paramKeys = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
  const metrics = metricRows(data ?? []);
  const metricKeys = trainingKeys(metrics); // system metrics: in the runs' System tabs
  const runs = (data ?? []).map((it) => ({ id: it.iteration_id, label: it.name || it.iteration_id.slice(0, 8) }));
  const goalOf = (key: string): Goal => goals.get(key) ?? defaultGoal(key);
  const toggleGoal = (key: string) => {
    const next = new Map(goals);
    const flipped: Goal = goalOf(key) === "min" ? "max" : "min";
    if (flipped === defaultGoal(key)) next.delete(key);
    else next.set(key, flipped);
    setQuery({ goals: [...next].map(([k, g]) => `${k}:${g}`) });
  };
  return (
    <section class="compare">
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      {data && (
        <>
          <h2>Params</h2>
          <label>
            <input type="checkbox" checked={onlyDiff} onChange={() => setOnlyDiff(!onlyDiff)} /> only differing params ({differing.size} of {paramKeys.length})
          </label>
          <div class="scroll-x">
            <table class="list diff-table">
              <thead>
                <tr>
                  <th />
                  {data.map((it) => (
                    <th key={it.iteration_id}>
                      <Link href={withAsOf(`/r/${it.iteration_id}`, asOf)}>{it.name || it.iteration_id.slice(0, 8)}</Link>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                <tr>
                  <th scope="row">status</th>
                  {data.map((it) => (
                    <td key={it.iteration_id}>
                      <Status status={it.display_status} />
                    </td>
                  ))}
                </tr>
                <tr>
                  <th scope="row">duration</th>
                  {data.map((it) => (
                    <td key={it.iteration_id}>{fmtDuration(it.duration_s)}</td>
                  ))}
                </tr>
                {paramKeys
                  .filter((k) => !onlyDiff || differing.has(k))
                  .map((k) => (
                    <tr key={k} class={differing.has(k) ? "differs" : ""} data-param={k}>
                      <th scope="row">{k}</th>
                      {params.map((p, i) => (
                        <td key={i}>{p[k] ?? <span class="muted">—</span>}</td>
                      ))}
                    </tr>
                  ))}
              </tbody>
            </table>
          </div>
          <h2>Metrics (last value; the best by each metric's goal)</h2>
          <div class="scroll-x">
            <table class="list metrics-compare">
              <thead>
                <tr>
                  <th>metric</th>
                  <th>goal</th>
                  {data.map((it) => (
                    <th key={it.iteration_id} class="num">
                      {it.name || it.iteration_id.slice(0, 8)}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {metrics.map((m) => {
                  const goal = goalOf(m.key);
                  const best = bestOf(m.values, goal);
                  const name = m.group ? `${m.key} · ${m.group}` : m.key;
                  return (
                    <tr key={`${m.group}/${m.key}`} data-metric={name}>
                      <th scope="row">{name}</th>
                      <td>
                        <button type="button" class="small" onClick={() => toggleGoal(m.key)} aria-label={`goal of ${m.key}: ${goal} is best; switch`} title="which is best: click to switch">
                          {goal === "min" ? "min ▼" : "max ▲"}
                        </button>
                      </td>
                      {m.values.map((v, i) => (
                        <td key={i} class={`num ${best.has(i) ? "best" : ""}`}>
                          {fmtNumber(v ?? null)}
                        </td>
                      ))}
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <h2>Overlays</h2>
          <ChartControls options={options} />
          <RunLegend runs={runs} asOf={asOf} />
          <ChartGrid runs={runs} metrics={metricKeys.slice(0, 24)} options={options} asOf={asOf} />
          <p class="muted">
            <Link href={withAsOf(`/e/${experimentId}/charts`, asOf, { runs: ids })}>every metric of these runs</Link>
          </p>
        </>
      )}
    </section>
  );
}
