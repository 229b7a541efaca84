// An experiment: its runs table, charts, compare, sweep and history, as one page with tabs.
import { type Experiment, get, type Project } from "../api";
import { Crumbs, ErrorBox, Tabs } from "../common";
import { useLoad } from "../hooks";
import { Link } from "../nav";
import { type ExperimentTab, href } from "../route";
import { ExperimentCharts } from "./charts";
import { Compare } from "./compare";
import { HistoryTable } from "./history";
import { RunsTable } from "./runs";
import { Sweep } from "./sweep";

export function ExperimentPage({ experimentId, tab, query }: { experimentId: string; tab: ExperimentTab; query: URLSearchParams }) {
  const { data, error } = useLoad(
    async (signal) => {
      const exp = await get<Experiment>(`/experiments/${experimentId}`, {}, signal);
      const project = await get<Project>(`/projects/${exp.project_id}`, {}, signal);
      return { exp, project };
    },
    [experimentId],
  );
  const runs = query.get("runs") ?? query.get("sel") ?? "";
  const keep = { runs: runs || undefined };
  const base = `/e/${experimentId}`;
  return (
    <main class="wide">
      <Crumbs>
        <Link href="/">Projects</Link> / {data && <Link href={`/p/${data.project.project_id}`}>{data.project.name}</Link>} /
      </Crumbs>
      <h1>{data?.exp.name ?? "Experiment"}</h1>
      <ErrorBox error={error} />
      {!error && (
        <>
          <Tabs
            current={tab}
            items={[
              ["runs", "Runs", href(base, { sel: runs || undefined })],
              ["charts", "Charts", href(`${base}/charts`, keep)],
              ["compare", "Compare", href(`${base}/compare`, keep)],
              ["sweep", "Sweep", `${base}/sweep`],
              ["history", "History", `${base}/history`],
            ]}
          />
          {tab === "runs" && <RunsTable experimentId={experimentId} query={query} asOf="" />}
          {tab === "charts" && <ExperimentCharts experimentId={experimentId} query={query} />}
          {tab === "compare" && <Compare query={query} />}
          {tab === "sweep" && <Sweep experimentId={experimentId} query={query} />}
          {tab === "history" && <HistoryTable entityId={experimentId} />}
        </>
      )}
    </main>
  );
}
