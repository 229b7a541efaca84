// N runs side by side: a params diff highlighting differing values, metric summaries, overlays.
import { useState } from "preact/hooks";
import { get, type Iteration, jsonValue } from "../api";
import { ErrorBox, Loading, Status } from "../common";
import { fmtDuration, fmtNumber } from "../format";
import { useLoad } from "../hooks";
import { Link } from "../nav";
import { listParam } from "../route";
import { differingKeys } from "../series";
import { ChartControls, ChartGrid, chartOptions, RunLegend } from "./charts";

export function Compare({ query }: { query: URLSearchParams }) {
  const ids = listParam(query.get("runs"));
  const options = chartOptions(query);
  const [onlyDiff, setOnlyDiff] = useState(false);
  const { data, error, loading } = useLoad((signal) => Promise.all(ids.slice(0, 50).map((id) => get<Iteration>(`/iterations/${id}`, {}, signal))), [ids.join(",")]);
  if (ids.length === 0) return <p class="muted">Select runs in the table, then Compare.</p>;
  const params = (data ?? []).map((it) => jsonValue<Record<string, string>>(it.params, {}));
  const metrics = (data ?? []).map((it) => jsonValue<Record<string, number>>(it.metrics, {}));
  const differing = differingKeys(params);
  const paramKeys = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
  const metricKeys = [...new Set(metrics.flatMap((m) => Object.keys(m)))].sort();
  const runs = (data ?? []).map((it) => ({ id: it.iteration_id, label: it.name || it.iteration_id.slice(0, 8) }));
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
                      <Link href={`/r/${it.iteration_id}`}>{it.name || it.iteration_id.slice(0, 8)}</Link>
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
          <h2>Metrics (last value)</h2>
          <div class="scroll-x">
            <table class="list">
              <tbody>
                {metricKeys.map((k) => {
                  const values = metrics.map((m) => m[k]);
                  const finite = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
                  const lo = Math.min(...finite);
                  return (
                    <tr key={k}>
                      <th scope="row">{k}</th>
                      {values.map((v, i) => (
                        <td key={i} class={`num ${v === lo && finite.length > 1 ? "best" : ""}`}>
                          {fmtNumber(typeof v === "number" ? v : null)}
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
          <RunLegend runs={runs} />
          <ChartGrid runs={runs} metrics={metricKeys.slice(0, 24)} options={options} />
        </>
      )}
    </section>
  );
}
