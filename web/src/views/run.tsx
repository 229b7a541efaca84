// A run: params, metric summaries, tags and notes (edited as events), environment,
// lineage, charts, logs (regex filter, live follow), artifacts (download, preview), history.
import { useEffect, useRef, useState } from "preact/hooks";
import { bytes, get, type Iteration, items, jsonValue, sendEvents, token, url } from "../api";
import { Crumbs, ErrorBox, KeyValues, Loading, Status, Tabs } from "../common";
import { fmtBytes, fmtDuration, fmtNumber, fmtTime } from "../format";
import { useInterval, useLoad } from "../hooks";
import { asOfOf, withAsOf } from "../asof";
import { AsOfBar } from "../asofbar";
import { Link, setQuery } from "../nav";
import type { RunTab } from "../route";
import { ChartControls, ChartGrid, chartOptions } from "./charts";
import { HistoryTable } from "./history";
import { RunCheckpoints } from "./checkpoints";
import { RunMedia } from "./media";
import { SYSTEM_GROUP, systemKeys, systemSections, trainingKeys } from "../media";

interface Summary {
  key: string;
  group: string;
  first: number;
  last: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  count: number;
  last_step: number;
}
interface Param {
  key: string;
  value: string;
  section: string;
}
interface Artifact {
  artifact_id: string;
  name: string;
  size_bytes: number;
  media_type: string;
  created_at: string;
}
interface LogLine {
  time: string;
  level: string;
  message: string;
  source: string;
  partition: number;
  offset: number;
  seq: number;
}

export function RunPage({ iterationId, tab, query }: { iterationId: string; tab: RunTab; query: URLSearchParams }) {
  const asOf = asOfOf(query);
  const run = useLoad((signal) => get<Iteration>(`/iterations/${iterationId}`, { as_of: asOf || undefined }, signal), [iterationId, asOf]);
  const it = run.data;
  useInterval(run.reload, 2000, it?.status === "RUNNING" && !asOf);
  const base = `/r/${iterationId}`;
  return (
    <main class="wide">
      <Crumbs>
        <Link href="/">Projects</Link> / {it && <Link href={`/p/${it.project_id}`}>project</Link>} / {it && <Link href={withAsOf(`/e/${it.experiment_id}`, asOf)}>experiment</Link>} /
      </Crumbs>
      <h1>
        {it?.name || iterationId} {it && <Status status={it.display_status} />}
      </h1>
      <AsOfBar asOf={asOf} what="this run" />
      <ErrorBox error={run.error} />
      {it && (
        <>
          <p class="muted">
            started {fmtTime(it.created_at)} by {it.created_by || "local"} · {fmtDuration(it.duration_s)}
            {it.error_message && <span class="error-inline"> · {it.error_message}</span>}
          </p>
          <Tabs
            current={tab}
            items={[
              ["overview", "Overview", withAsOf(base, asOf)],
              ["charts", "Charts", withAsOf(`${base}/charts`, asOf)],
              ["system", "System", withAsOf(`${base}/system`, asOf)],
              ["media", "Media", withAsOf(`${base}/media`, asOf)],
              ["checkpoints", "Checkpoints", withAsOf(`${base}/checkpoints`, asOf)],
              ["logs", "Logs", withAsOf(`${base}/logs`, asOf)],
              ["artifacts", "Artifacts", withAsOf(`${base}/artifacts`, asOf)],
              ["history", "History", withAsOf(`${base}/history`, asOf)],
            ]}
          />
          {tab === "overview" && <Overview it={it} reload={run.reload} asOf={asOf} />}
          {tab === "charts" && <RunCharts it={it} query={query} asOf={asOf} />}
          {tab === "system" && <RunSystem it={it} query={query} asOf={asOf} />}
          {tab === "media" && <RunMedia iterationId={iterationId} query={query} asOf={asOf} />}
          {tab === "checkpoints" && <RunCheckpoints iterationId={iterationId} query={query} asOf={asOf} />}
          {tab === "logs" && <Logs iterationId={iterationId} query={query} running={it.status === "RUNNING"} asOf={asOf} />}
          {tab === "artifacts" && <Artifacts iterationId={iterationId} asOf={asOf} />}
          {tab === "history" && <HistoryTable entityId={iterationId} asOf={asOf} asOfLink={(offset) => withAsOf(base, String(offset))} what="the run" />}
        </>
      )}
    </main>
  );
}

function Overview({ it, reload, asOf }: { it: Iteration; reload: () => void; asOf: string }) {
  const then = { as_of: asOf || undefined };
  const params = useLoad((signal) => items<Param>(`/iterations/${it.iteration_id}/params`, then, signal), [it.iteration_id, asOf]);
  const summaries = useLoad((signal) => items<Summary>(`/iterations/${it.iteration_id}/metrics`, then, signal), [it.iteration_id, it.metrics, asOf]);
  const children = useLoad((signal) => items<Iteration>("/iterations", { parent_iteration_id: it.iteration_id, limit: 100, ...then }, signal), [it.iteration_id, asOf]);
  const versions = useLoad(
    (signal) => items<{ model_version_id: string; model_id: string; version: number; stage: string }>("/model-versions", { iteration_id: it.iteration_id, ...then }, signal),
    [it.iteration_id, asOf],
  );
  const env = jsonValue<Record<string, unknown> | null>(it.environment, null);
  const systemCount = (summaries.data ?? []).filter((m) => m.group === SYSTEM_GROUP).length;
  return (
    <div class="overview">
      <section>
        <h2>Params</h2>
        <ErrorBox error={params.error} />
        {params.data && <KeyValues rows={params.data.map((p) => [p.key, p.value])} empty="no params" />}
      </section>
      <section>
        <h2>Metrics</h2>
        <ErrorBox error={summaries.error} />
        {summaries.data && summaries.data.length === 0 && <p class="muted">no metrics</p>}
        {systemCount > 0 && (
          <p class="muted">
            and {systemCount} system metrics, in <Link href={withAsOf(`/r/${it.iteration_id}/system`, asOf)}>System</Link>
          </p>
        )}
        {summaries.data && summaries.data.length > systemCount && (
          <table class="list metrics">
            <thead>
              <tr>
                <th>metric</th>
                <th>group</th>
                <th class="num">last</th>
                <th class="num">min</th>
                <th class="num">max</th>
                <th class="num">mean</th>
                <th class="num">points</th>
                <th class="num">last step</th>
              </tr>
            </thead>
            <tbody>
              {summaries.data.filter((m) => m.group !== SYSTEM_GROUP).map((m) => (
                <tr key={`${m.group}/${m.key}`}>
                  <th scope="row">{m.key}</th>
                  <td>{m.group || <span class="muted">—</span>}</td>
                  <td class="num">{fmtNumber(m.last)}</td>
                  <td class="num">{fmtNumber(m.min)}</td>
                  <td class="num">{fmtNumber(m.max)}</td>
                  <td class="num">{fmtNumber(m.mean)}</td>
                  <td class="num">{m.count}</td>
                  <td class="num">{m.last_step}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <Tags it={it} reload={reload} readOnly={!!asOf} />
      <Notes it={it} reload={reload} readOnly={!!asOf} />
      <section>
        <h2>Lineage</h2>
        <KeyValues
          rows={[
            ...(it.parent_iteration_id ? ([["parent", <Link href={withAsOf(`/r/${it.parent_iteration_id}`, asOf)}>{it.parent_iteration_id.slice(0, 12)}</Link>]] as [string, preact.ComponentChildren][]) : []),
            ...(children.data ?? []).map((c) => ["child", <Link href={withAsOf(`/r/${c.iteration_id}`, asOf)}>{c.name || c.iteration_id.slice(0, 12)}</Link>] as [string, preact.ComponentChildren]),
            ...(versions.data ?? []).map((v) => ["model version", <Link href={`/models/${v.model_id}`}>version {v.version} ({v.stage})</Link>] as [string, preact.ComponentChildren]),
          ]}
          empty="no parent, children or registered models"
        />
      </section>
      <section>
        <h2>Environment</h2>
        {env ? (
          <>
            <KeyValues
              rows={[
                ["python", String(env.python_version ?? "")],
                ["platform", String(env.platform ?? "")],
                ["entrypoint", String(env.entrypoint ?? "")],
                ["git sha", String(env.git_sha ?? "")],
                ["git branch", String(env.git_branch ?? "")],
                ["dirty", env.git_dirty ? "yes" : "no"],
              ]}
            />
            {typeof env.pip_freeze === "string" && env.pip_freeze && (
              <details>
                <summary>packages ({env.pip_freeze.split("\n").filter(Boolean).length})</summary>
                <pre>{env.pip_freeze}</pre>
              </details>
            )}
            {typeof env.git_diff === "string" && env.git_diff && (
              <details>
                <summary>git diff</summary>
                <pre>{env.git_diff}</pre>
              </details>
            )}
          </>
        ) : (
          <p class="muted">not captured</p>
        )}
      </section>
    </div>
  );
}

function Tags({ it, reload, readOnly }: { it: Iteration; reload: () => void; readOnly: boolean }) {
  const tags = jsonValue<Record<string, string>>(it.tags, {});
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [error, setError] = useState<Error | undefined>();
  const send = async (body: Record<string, unknown>) => {
    try {
      setError(undefined);
      const ack = await sendEvents([{ type: body.type, entity: "iteration", entity_id: it.iteration_id, ...body }]);
      await get(`/iterations/${it.iteration_id}`, { min_offset: String(ack.last_offset) });
      reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <section>
      <h2>Tags</h2>
      <ul class="tags">
        {Object.entries(tags).map(([k, v]) => (
          <li key={k} class="tag">
            {v ? `${k}=${v}` : k}{" "}
            {!readOnly && (
              <button type="button" class="small" aria-label={`remove tag ${k}`} onClick={() => send({ type: "tags_deleted", keys: [k] })}>
                ×
              </button>
            )}
          </li>
        ))}
      </ul>
      {Object.keys(tags).length === 0 && <p class="muted">no tags</p>}
      {!readOnly && (
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          if (!key) return;
          send({ type: "tags_set", tags: { [key]: value } }).then(() => {
            setKey("");
            setValue("");
          });
        }}
      >
        <input aria-label="tag key" placeholder="key" value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
        <input aria-label="tag value" placeholder="value (optional)" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        <button type="submit">Add tag</button>
      </form>
      )}
      <ErrorBox error={error} />
    </section>
  );
}

function Notes({ it, reload, readOnly }: { it: Iteration; reload: () => void; readOnly: boolean }) {
  const [text, setText] = useState(it.notes);
  const [saved, setSaved] = useState(true);
  const [error, setError] = useState<Error | undefined>();
  useEffect(() => {
    if (saved) setText(it.notes);
  }, [it.notes]);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      setError(undefined);
      const ack = await sendEvents([{ type: "notes_set", entity: "iteration", entity_id: it.iteration_id, notes: text }]);
      await get(`/iterations/${it.iteration_id}`, { min_offset: String(ack.last_offset) });
      setSaved(true);
      reload();
    } catch (err) {
      setError(err as Error);
    }
  };
  if (readOnly) {
    return (
      <section>
        <h2>Notes</h2>
        {it.notes ? <pre class="notes">{it.notes}</pre> : <p class="muted">no notes</p>}
      </section>
    );
  }
  return (
    <section>
      <h2>Notes</h2>
      <form onSubmit={save}>
        <textarea
          aria-label="notes"
          rows={4}
          value={text}
          onInput={(e) => {
            setText((e.target as HTMLTextAreaElement).value);
            setSaved(false);
          }}
        />
        <div class="toolbar">
          <button type="submit" disabled={saved}>
            Save notes
          </button>
          {saved && it.notes && <span class="muted">saved</span>}
        </div>
      </form>
      <ErrorBox error={error} />
    </section>
  );
}

function RunCharts({ it, query, asOf }: { it: Iteration; query: URLSearchParams; asOf: string }) {
  const options = chartOptions(query);
  const summaries = useLoad((signal) => items<Summary>(`/iterations/${it.iteration_id}/metrics`, { as_of: asOf || undefined }, signal), [it.iteration_id, asOf]);
  const keys = trainingKeys(summaries.data ?? []).sort();
  const system = systemKeys(summaries.data ?? []).length;
  return (
    <section>
      <ChartControls options={options} />
      <ErrorBox error={summaries.error} />
      {summaries.data && keys.length === 0 && <p class="muted">no metrics</p>}
      {system > 0 && (
        <p class="muted">
          {system} system metrics (CPU, memory, I/O, GPU) are in <Link href={withAsOf(`/r/${it.iteration_id}/system`, asOf)}>System</Link>.
        </p>
      )}
      <ChartGrid runs={[{ id: it.iteration_id, label: it.name || it.iteration_id.slice(0, 8) }]} metrics={keys} options={options} asOf={asOf} />
    </section>
  );
}

const SYSTEM_ONLY = [SYSTEM_GROUP];

/** The "system" group (sampled by the SDK) in sections of its own, by wall time unless
 * the URL says otherwise. */
function RunSystem({ it, query, asOf }: { it: Iteration; query: URLSearchParams; asOf: string }) {
  const options = chartOptions(query.has("x") ? query : new URLSearchParams([...query, ["x", "wall"]]));
  const summaries = useLoad((signal) => items<Summary>(`/iterations/${it.iteration_id}/metrics`, { as_of: asOf || undefined }, signal), [it.iteration_id, asOf]);
  const sections = systemSections(systemKeys(summaries.data ?? []));
  const runs = [{ id: it.iteration_id, label: it.name || it.iteration_id.slice(0, 8) }];
  return (
    <section>
      <ChartControls options={options} />
      <ErrorBox error={summaries.error} />
      {summaries.data && sections.length === 0 && (
        <p class="muted">
          No system metrics: start the iteration with <code>system_metrics=True</code> (pip install 'deardiary[system]').
        </p>
      )}
      {sections.map(([name, keys]) => (
        <section key={name} class="system-section" aria-label={`system ${name}`}>
          <h2>{name}</h2>
          <ChartGrid runs={runs} metrics={keys} options={options} asOf={asOf} groups={SYSTEM_ONLY} />
        </section>
      ))}
    </section>
  );
}

function Logs({ iterationId, query, running, asOf }: { iterationId: string; query: URLSearchParams; running: boolean; asOf: string }) {
  const regex = query.get("regex") ?? "";
  const [draft, setDraft] = useState(regex);
  const [follow, setFollow] = useState(false);
  const [lines, setLines] = useState<LogLine[]>([]);
  const [error, setError] = useState<Error | undefined>();
  const bottom = useRef<HTMLDivElement>(null);
  const loaded = useLoad((signal) => items<LogLine>(`/iterations/${iterationId}/logs`, { regex: regex || undefined, limit: 10000, as_of: asOf || undefined }, signal), [iterationId, regex, asOf]);
  useEffect(() => {
    if (loaded.data) setLines(loaded.data);
  }, [loaded.data]);
  useEffect(() => {
    if (!follow) return;
    const abort = new AbortController();
    (async () => {
      const headers: Record<string, string> = {};
      const t = token();
      if (t) headers.Authorization = `Bearer ${t}`;
      const response = await fetch(url(`/iterations/${iterationId}/logs/follow`, { regex: regex || undefined, max_seconds: 3600 }), { headers, signal: abort.signal });
      if (!response.ok || !response.body) throw new Error(`follow failed: ${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const messages = buffer.split("\n\n");
        buffer = messages.pop() ?? "";
        const fresh = messages.filter((m) => m.startsWith("data: ")).map((m) => JSON.parse(m.slice(6)) as LogLine);
        if (fresh.length) {
          setLines((old) => {
            const seen = new Set(old.map((l) => `${l.partition}:${l.offset}:${l.seq}`));
            return [...old, ...fresh.filter((l) => !seen.has(`${l.partition}:${l.offset}:${l.seq}`))];
          });
          bottom.current?.scrollIntoView({ block: "end" });
        }
      }
    })().catch((e: Error) => e.name !== "AbortError" && setError(e));
    return () => abort.abort();
  }, [follow, iterationId, regex]);
  return (
    <section>
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery({ regex: draft });
        }}
      >
        <input type="search" aria-label="regex filter" placeholder="regex filter" value={draft} onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
        <button type="submit">Filter</button>
        {!asOf && (
          <label>
            <input type="checkbox" checked={follow} onChange={() => setFollow(!follow)} /> follow live{running ? "" : " (run finished)"}
          </label>
        )}
        <span class="muted">{lines.length} lines</span>
      </form>
      <ErrorBox error={loaded.error ?? error} />
      <pre class="logs" aria-label="log lines">
        {lines.map((l) => (
          <div key={`${l.partition}:${l.offset}:${l.seq}`} class={`log log-${l.level.toLowerCase()}`}>
            <span class="muted">{fmtTime(l.time)}</span> {l.level && <span class="level">{l.level}</span>} {l.message}
          </div>
        ))}
        <div ref={bottom} />
      </pre>
    </section>
  );
}

function isText(a: Artifact): boolean {
  return a.media_type.startsWith("text/") || /json|yaml|xml|csv|toml/.test(a.media_type) || /\.(txt|log|md|json|ya?ml|csv|py|toml|cfg|ini)$/i.test(a.name);
}

function isImage(a: Artifact): boolean {
  return /^image\/(png|jpeg|gif|webp|svg\+xml)$/.test(a.media_type) || /\.(png|jpe?g|gif|webp)$/i.test(a.name);
}

function Artifacts({ iterationId, asOf }: { iterationId: string; asOf: string }) {
  const list = useLoad((signal) => items<Artifact>("/artifacts", { iteration_id: iterationId, limit: 10000, as_of: asOf || undefined }, signal), [iterationId, asOf]);
  const [preview, setPreview] = useState<{ name: string; text?: string; image?: string } | null>(null);
  const [error, setError] = useState<Error | undefined>();
  const fetchBlob = async (a: Artifact) => (await bytes(`/artifacts/${a.artifact_id}/content`)).blob();
  const download = async (a: Artifact) => {
    try {
      const blob = await fetchBlob(a);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = a.name.split("/").pop() ?? a.name;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (e) {
      setError(e as Error);
    }
  };
  const show = async (a: Artifact) => {
    try {
      const blob = await fetchBlob(a);
      if (preview?.image) URL.revokeObjectURL(preview.image);
      if (isImage(a)) setPreview({ name: a.name, image: URL.createObjectURL(blob) });
      else setPreview({ name: a.name, text: (await blob.slice(0, 256 * 1024).text()) + (blob.size > 256 * 1024 ? "\n…" : "") });
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <section>
      <ErrorBox error={list.error ?? error} />
      <Loading when={list.loading && !list.data} />
      {list.data && list.data.length === 0 && <p class="muted">No artifacts.</p>}
      {list.data && list.data.length > 0 && (
        <table class="list">
          <thead>
            <tr>
              <th>name</th>
              <th class="num">size</th>
              <th>type</th>
              <th>stored</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.data.map((a) => (
              <tr key={a.artifact_id}>
                <td>{a.name}</td>
                <td class="num">{fmtBytes(a.size_bytes)}</td>
                <td>{a.media_type}</td>
                <td>{fmtTime(a.created_at)}</td>
                <td>
                  <button type="button" class="small" onClick={() => download(a)}>
                    download
                  </button>{" "}
                  {(isText(a) || isImage(a)) && (
                    <button type="button" class="small" onClick={() => show(a)}>
                      preview
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {preview && (
        <figure class="preview">
          <figcaption>{preview.name}</figcaption>
          {preview.image ? <img src={preview.image} alt={preview.name} /> : <pre>{preview.text}</pre>}
        </figure>
      )}
    </section>
  );
}
