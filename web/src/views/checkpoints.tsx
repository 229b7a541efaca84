// A run's checkpoints: step, the metrics recorded with each, size and files; sorted by
// step or best first by a metric with its goal (the server's order, in the URL:
// ?order_by=loss&goal=min); discarded ones (retention) listed too when asked, marked as
// such; each file downloadable; the model versions made from each, linked.
import { useState } from "preact/hooks";
import { bytes, items, jsonValue } from "../api";
import { ErrorBox, Loading } from "../common";
import { fmtBytes, fmtNumber, fmtTime } from "../format";
import { useLoad } from "../hooks";
import { Link, setQuery } from "../nav";
import { type Checkpoint, checkpointMetrics } from "../media";
import { defaultGoal, type Goal } from "../series";

type File = { path: string; content_hash: string; size_bytes: number };

export function RunCheckpoints({ iterationId, query, asOf }: { iterationId: string; query: URLSearchParams; asOf: string }) {
  const orderBy = query.get("order_by") ?? "";
  const goal: Goal = query.get("goal") === "max" ? "max" : query.get("goal") === "min" ? "min" : defaultGoal(orderBy);
  const discarded = query.get("discarded") === "1";
  const list = useLoad(
    (signal) =>
      items<Checkpoint>(`/iterations/${iterationId}/checkpoints`, { order_by: orderBy || undefined, goal: orderBy ? goal : undefined, include_discarded: discarded || undefined, as_of: asOf || undefined }, signal),
    [iterationId, orderBy, goal, discarded, asOf],
  );
  const versions = useLoad(
    (signal) => items<{ model_version_id: string; model_id: string; version: number; checkpoint_id: string | null }>("/model-versions", { iteration_id: iterationId, limit: 10000, as_of: asOf || undefined }, signal),
    [iterationId, asOf],
  );
  const madeFrom = new Map<string, { model_id: string; version: number }[]>();
  for (const v of versions.data ?? []) if (v.checkpoint_id) madeFrom.set(v.checkpoint_id, [...(madeFrom.get(v.checkpoint_id) ?? []), v]);
  const rows = (list.data ?? []).map((c) => ({ ...c, metrics: jsonValue<Record<string, number>>(c.metrics, {}), files: jsonValue<File[]>(c.files, []) }));
  const metrics = checkpointMetrics(rows.map((r) => r.metrics));
  const [error, setError] = useState<Error | undefined>();
  const sortBy = (key: string) => {
    if (key === orderBy) setQuery({ goal: goal === "min" ? "max" : "min" });
    else setQuery({ order_by: key || null, goal: null });
  };
  const download = async (file: File) => {
    try {
      setError(undefined);
      const blob = await (await bytes(`/iterations/${iterationId}/content?hash=${file.content_hash}`)).blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = file.path.split("/").pop() || file.content_hash;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <section class="checkpoints">
      <div class="toolbar">
        <label>
          order by{" "}
          <select aria-label="order checkpoints by" value={orderBy} onChange={(e) => sortBy((e.target as HTMLSelectElement).value)}>
            <option value="">step</option>
            {metrics.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
            {orderBy && !metrics.includes(orderBy) && <option value={orderBy}>{orderBy}</option>}
          </select>
        </label>
        {orderBy && (
          <label>
            goal{" "}
            <select aria-label="goal" value={goal} onChange={(e) => setQuery({ goal: (e.target as HTMLSelectElement).value })}>
              <option value="min">min (lower is better)</option>
              <option value="max">max (higher is better)</option>
            </select>
          </label>
        )}
        <label>
          <input type="checkbox" checked={discarded} onChange={() => setQuery({ discarded: discarded ? null : "1" })} /> show discarded
        </label>
      </div>
      <ErrorBox error={list.error ?? error} />
      <Loading when={list.loading && !list.data} />
      {list.data && rows.length === 0 && <p class="muted">No checkpoints{discarded ? "" : " kept"}.</p>}
      {rows.length > 0 && (
        <table class="list" aria-label="checkpoints">
          <thead>
            <tr>
              <th aria-sort={orderBy === "" ? "ascending" : undefined}>
                <button type="button" class="link" onClick={() => sortBy("")}>
                  step
                </button>
              </th>
              <th>name</th>
              {metrics.map((m) => (
                <th key={m} class="num" aria-sort={orderBy === m ? (goal === "min" ? "ascending" : "descending") : undefined}>
                  <button type="button" class="link" onClick={() => sortBy(m)} title={`best first by ${m}`}>
                    {m} {orderBy === m ? (goal === "min" ? "↑ min" : "↓ max") : ""}
                  </button>
                </th>
              ))}
              <th class="num">size</th>
              <th>saved</th>
              <th>status</th>
              <th>model versions</th>
              <th>files</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c, i) => (
              <tr key={c.checkpoint_id} class={c.discarded ? "discarded" : undefined} data-checkpoint={c.checkpoint_id}>
                <td class="num">{c.step}</td>
                <td>
                  {c.name}
                  {orderBy && i === 0 && !c.discarded && c.metrics[orderBy] !== undefined && <span class="badge"> best</span>}
                </td>
                {metrics.map((m) => (
                  <td key={m} class="num">
                    {c.metrics[m] === undefined ? <span class="muted">—</span> : fmtNumber(c.metrics[m])}
                  </td>
                ))}
                <td class="num">{fmtBytes(c.size_bytes)}</td>
                <td>{fmtTime(c.created_at)}</td>
                <td>{c.discarded ? <span class="status status-discarded" title={c.discarded_reason}>discarded{c.discarded_reason ? ` (${c.discarded_reason})` : ""}</span> : "kept"}</td>
                <td>
                  {(madeFrom.get(c.checkpoint_id) ?? []).map((v) => (
                    <Link key={`${v.model_id}/${v.version}`} href={`/models/${v.model_id}`}>
                      version {v.version}{" "}
                    </Link>
                  ))}
                </td>
                <td>
                  {c.discarded ? (
                    <span class="muted">not kept</span>
                  ) : (
                    c.files.map((f) => (
                      <button key={f.path} type="button" class="small" title={`${f.path} (${fmtBytes(f.size_bytes)})`} onClick={() => download(f)}>
                        download {f.path}
                      </button>
                    ))
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
