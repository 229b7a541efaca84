// An experiment: its runs table, charts, compare, sweep and history, as one page with tabs.
// `?as_of=` (the "as of" control) shows every tab as the experiment stood then.
import { asOfOf, withAsOf } from "../asof";
import { AsOfBar } from "../asofbar";
import { type Experiment, get, type Project } from "../api";
import { Crumbs, ErrorBox, Tabs } from "../common";
import { useLoad } from "../hooks";
import { Link } from "../nav";
import type { ExperimentTab } from "../route";
import { ExperimentCharts } from "./charts";
import { Compare } from "./compare";
import { HistoryTable } from "./history";
import { RunsTable } from "./runs";
import { Sweep } from "./sweep";

export function ExperimentPage({ experimentId, tab, query }: { experimentId: string; tab: ExperimentTab; query: URLSearchParams }) {
  const asOf = asOfOf(query);
  const { data, error } = useLoad(
    async (signal) => {
      const then = { as_of: asOf || undefined };
      const exp = await get<Experiment>(`/experiments/${experimentId}`, then, signal);
      const project = await get<Project>(`/projects/${exp.project_id}`, then, signal);
      return { exp, project };
    },
    [experimentId, asOf],
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
      <AsOfBar asOf={asOf} what="this experiment" />
      <ErrorBox error={error} />
      {!error && (
        <>
          <Tabs
            current={tab}
            items={[
              ["runs", "Runs", withAsOf(base, asOf, { sel: runs || undefined })],
              ["charts", "Charts", withAsOf(`${base}/charts`, asOf, keep)],
              ["compare", "Compare", withAsOf(`${base}/compare`, asOf, keep)],
              ["sweep", "Sweep", withAsOf(`${base}/sweep`, asOf)],
              ["history", "History", withAsOf(`${base}/history`, asOf)],
            ]}
          />
          {tab === "runs" && <RunsTable key={asOf} experimentId={experimentId} query={query} asOf={asOf} />}
          {tab === "charts" && <ExperimentCharts experimentId={experimentId} query={query} asOf={asOf} />}
          {tab === "compare" && <Compare experimentId={experimentId} query={query} asOf={asOf} />}
          {tab === "sweep" && <Sweep experimentId={experimentId} query={query} asOf={asOf} />}
          {tab === "history" && (
            <HistoryTable entityId={experimentId} asOf={asOf} asOfLink={(offset) => withAsOf(base, String(offset))} what="the experiment" />
          )}
        </>
      )}
    </main>
  );
}
