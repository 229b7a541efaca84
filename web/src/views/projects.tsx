// Projects and their experiments: counts, last activity, search.
import { useMemo, useState } from "preact/hooks";
import { type Experiment, type Project, items, post } from "../api";
import { Crumbs, ErrorBox, Loading } from "../common";
import { fmtAgo, fmtTime } from "../format";
import { useLoad } from "../hooks";
import { Link } from "../nav";

interface Activity {
  experiment_id: string;
  runs: number;
  running: number;
  last: string | null;
}

async function activity(): Promise<Map<string, Activity>> {
  const answer = await post<{ items: Activity[] }>("/sql", {
    query:
      "SELECT experiment_id, count(*) AS runs, count(*) FILTER (WHERE status = 'RUNNING') AS running," +
      " max(updated_at) AS last FROM iterations WHERE NOT deleted GROUP BY experiment_id",
  });
  return new Map(answer.items.map((a) => [a.experiment_id, a]));
}

function useCatalog(projectId?: string) {
  return useLoad(
    async (signal) => {
      const [projects, experiments, acts] = await Promise.all([
        items<Project>("/projects", { limit: 10000 }, signal),
        items<Experiment>("/experiments", { limit: 10000, project_id: projectId }, signal),
        activity(),
      ]);
      return { projects, experiments, acts };
    },
    [projectId],
  );
}

function ExperimentRows({ experiments, acts }: { experiments: Experiment[]; acts: Map<string, Activity> }) {
  return (
    <table class="list">
      <thead>
        <tr>
          <th>experiment</th>
          <th class="num">runs</th>
          <th class="num">running</th>
          <th>last activity</th>
          <th>created</th>
        </tr>
      </thead>
      <tbody>
        {experiments.map((e) => {
          const a = acts.get(e.experiment_id);
          return (
            <tr key={e.experiment_id}>
              <td>
                <Link href={`/e/${e.experiment_id}`}>{e.name}</Link>
                {e.description && <div class="muted small-text">{e.description}</div>}
              </td>
              <td class="num">{a?.runs ?? 0}</td>
              <td class="num">{a?.running ?? 0}</td>
              <td title={fmtTime(a?.last ?? e.updated_at)}>{fmtAgo(a?.last ?? e.updated_at)}</td>
              <td>{fmtTime(e.created_at)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function Projects() {
  const { data, error, loading } = useCatalog();
  const [search, setSearch] = useState("");
  const s = search.toLowerCase();
  const shown = useMemo(() => {
    if (!data) return [];
    return data.projects
      .map((p) => {
        const exps = data.experiments.filter((e) => e.project_id === p.project_id);
        const match = p.name.toLowerCase().includes(s);
        return { p, exps: match ? exps : exps.filter((e) => e.name.toLowerCase().includes(s)) };
      })
      .filter(({ p, exps }) => p.name.toLowerCase().includes(s) || exps.length > 0);
  }, [data, s]);
  return (
    <main>
      <h1>Projects</h1>
      <input type="search" class="search" placeholder="search projects and experiments" aria-label="search projects and experiments" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} />
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      {data && shown.length === 0 && <p class="muted">{data.projects.length ? "Nothing matches." : "No projects yet: log a run with the SDK."}</p>}
      {shown.map(({ p, exps }) => {
        const runs = exps.reduce((n, e) => n + (data!.acts.get(e.experiment_id)?.runs ?? 0), 0);
        return (
          <section class="project" key={p.project_id}>
            <h2>
              <Link href={`/p/${p.project_id}`}>{p.name}</Link>{" "}
              <span class="muted small-text">
                {exps.length} experiments, {runs} runs
              </span>
            </h2>
            {exps.length > 0 && <ExperimentRows experiments={exps} acts={data!.acts} />}
          </section>
        );
      })}
    </main>
  );
}

export function ProjectPage({ projectId }: { projectId: string }) {
  const { data, error, loading } = useCatalog(projectId);
  const [search, setSearch] = useState("");
  const project = data?.projects.find((p) => p.project_id === projectId);
  const exps = (data?.experiments ?? []).filter((e) => e.name.toLowerCase().includes(search.toLowerCase()));
  return (
    <main>
      <Crumbs>
        <Link href="/">Projects</Link> /
      </Crumbs>
      <h1>{project?.name ?? "Project"}</h1>
      {project?.description && <p>{project.description}</p>}
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      <input type="search" class="search" placeholder="search experiments" aria-label="search experiments" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} />
      {data && <ExperimentRows experiments={exps} acts={data.acts} />}
      <p>
        <Link href={`/history/${projectId}`}>history of this project</Link>
      </p>
    </main>
  );
}
