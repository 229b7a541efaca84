// The model registry: models, versions, stages, aliases, lineage back to the run.
import { get, items, jsonValue } from "../api";
import { Crumbs, ErrorBox, KeyValues, Loading, Status } from "../common";
import { fmtNumber, fmtTime } from "../format";
import { useLoad } from "../hooks";
import { Link } from "../nav";

interface Model {
  model_id: string;
  project_id: string;
  name: string;
  description: string;
  latest_version: number;
  updated_at: string;
}
interface Version {
  model_version_id: string;
  model_id: string;
  version: number;
  iteration_id: string | null;
  artifact_id: string | null;
  stage: string;
  aliases: string[] | string;
  description: string;
  created_by: string;
  created_at: string;
}
interface Lineage {
  iteration: { iteration_id: string; name: string; display_status: string; experiment_id: string } | null;
  params: { key: string; value: string }[];
  metrics: { key: string; last: number; min: number | null; max: number | null }[];
  artifact: { artifact_id: string; name: string; size_bytes: number } | null;
}

export function Models() {
  const { data, error, loading } = useLoad((signal) => items<Model>("/models", { limit: 10000 }, signal), []);
  return (
    <main>
      <h1>Models</h1>
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      {data && data.length === 0 && <p class="muted">No models registered yet.</p>}
      {data && data.length > 0 && (
        <table class="list">
          <thead>
            <tr>
              <th>model</th>
              <th class="num">latest version</th>
              <th>updated</th>
            </tr>
          </thead>
          <tbody>
            {data.map((m) => (
              <tr key={m.model_id}>
                <td>
                  <Link href={`/models/${m.model_id}`}>{m.name}</Link>
                </td>
                <td class="num">{m.latest_version}</td>
                <td>{fmtTime(m.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}

function VersionLineage({ version }: { version: Version }) {
  const { data, error } = useLoad((signal) => get<Lineage>(`/model-versions/${version.model_version_id}/lineage`, {}, signal), [version.model_version_id]);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <Loading when />;
  return (
    <div class="lineage">
      {data.iteration ? (
        <p>
          from run <Link href={`/r/${data.iteration.iteration_id}`}>{data.iteration.name || data.iteration.iteration_id}</Link> <Status status={data.iteration.display_status} />
        </p>
      ) : (
        <p class="muted">not linked to a run</p>
      )}
      {data.artifact && (
        <p>
          artifact <code>{data.artifact.name}</code>
        </p>
      )}
      <KeyValues rows={data.params.map((p) => [p.key, p.value])} empty="no params" />
      <KeyValues rows={data.metrics.map((m) => [m.key, fmtNumber(m.last)])} empty="no metrics" />
    </div>
  );
}

interface ModelRun {
  role: "produced" | "used";
  iteration_id: string;
  name: string;
  status: string;
  experiment_id: string;
  versions: number[] | string;
  first_at: string;
}

/** The runs that produced the model's versions and the runs that used them (role). */
function ModelRuns({ modelId }: { modelId: string }) {
  const { data, error } = useLoad((signal) => items<ModelRun>(`/models/${modelId}/iterations`, {}, signal), [modelId]);
  return (
    <section class="model-runs">
      <h2>Runs</h2>
      <ErrorBox error={error} />
      {data && data.length === 0 && <p class="muted">No run produced or used a version yet.</p>}
      {data && data.length > 0 && (
        <table class="list" aria-label="model runs">
          <thead>
            <tr>
              <th>role</th>
              <th>run</th>
              <th>status</th>
              <th>versions</th>
              <th>since</th>
            </tr>
          </thead>
          <tbody>
            {data.map((r) => (
              <tr key={`${r.role}/${r.iteration_id}`} data-role={r.role}>
                <td>
                  <span class={`role role-${r.role}`}>{r.role === "produced" ? "produced" : "used"}</span>
                </td>
                <td>
                  <Link href={`/r/${r.iteration_id}`}>{r.name || r.iteration_id.slice(0, 12)}</Link> <span class="muted">(<Link href={`/e/${r.experiment_id}`}>experiment</Link>)</span>
                </td>
                <td>
                  <Status status={r.status} />
                </td>
                <td>{jsonValue<number[]>(r.versions, []).map((v) => `v${v}`).join(", ")}</td>
                <td>{fmtTime(r.first_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function ModelPage({ modelId }: { modelId: string }) {
  const { data, error, loading } = useLoad(
    async (signal) => {
      const model = await get<Model>(`/models/${modelId}`, {}, signal);
      const versions = await items<Version>("/model-versions", { model_id: modelId, limit: 10000 }, signal);
      return { model, versions };
    },
    [modelId],
  );
  return (
    <main>
      <Crumbs>
        <Link href="/models">Models</Link> /
      </Crumbs>
      <h1>{data?.model.name ?? "Model"}</h1>
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      {data?.model.description && <p>{data.model.description}</p>}
      {data && <ModelRuns modelId={modelId} />}
      {data?.versions
        .slice()
        .reverse()
        .map((v) => (
          <section class="version" key={v.model_version_id}>
            <h2>
              version {v.version} <span class={`stage stage-${v.stage.toLowerCase()}`}>{v.stage}</span>{" "}
              {jsonValue<string[]>(v.aliases, []).map((a) => (
                <span class="alias" key={a}>
                  @{a}
                </span>
              ))}
            </h2>
            <p class="muted">
              registered {fmtTime(v.created_at)} by {v.created_by || "local"} · <Link href={`/history/${v.model_version_id}`}>history</Link>
            </p>
            <VersionLineage version={v} />
          </section>
        ))}
    </main>
  );
}
