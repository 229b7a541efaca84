// An entity's history: every event about it, who sent it and when.
import { items } from "../api";
import { Crumbs, ErrorBox, Loading } from "../common";
import { fmtTime } from "../format";
import { useLoad } from "../hooks";
import { Link } from "../nav";

interface Event {
  partition: number;
  offset: number;
  event_id: string;
  type: string;
  actor: string;
  client_time: string;
  log_time: string;
  entity_kind: string;
  entity_id: string;
  summary: unknown;
}

export function HistoryTable({ entityId, asOfLink }: { entityId: string; asOfLink?: (offset: number) => string }) {
  const { data, error, loading } = useLoad((signal) => items<Event>(`/history/${entityId}`, { limit: 10000 }, signal), [entityId]);
  return (
    <section>
      <ErrorBox error={error} />
      <Loading when={loading && !data} />
      {data && (
        <table class="list history">
          <thead>
            <tr>
              <th>logged</th>
              <th>offset</th>
              <th>who</th>
              <th>what</th>
              <th>details</th>
            </tr>
          </thead>
          <tbody>
            {data.map((e) => (
              <tr key={e.event_id}>
                <td>{fmtTime(e.log_time)}</td>
                <td class="num">
                  {asOfLink ? <Link href={asOfLink(e.offset)} title="show the experiment as of this offset">{e.partition}:{e.offset}</Link> : `${e.partition}:${e.offset}`}
                </td>
                <td>{e.actor || <span class="muted">local</span>}</td>
                <td>{e.type.replace(/_/g, " ")}</td>
                <td class="summary">{typeof e.summary === "string" ? e.summary : JSON.stringify(e.summary)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {data && data.length === 0 && <p class="muted">No events.</p>}
    </section>
  );
}

export function HistoryPage({ entityId }: { entityId: string }) {
  return (
    <main>
      <Crumbs>
        <Link href="/">Projects</Link> /
      </Crumbs>
      <h1>History of {entityId}</h1>
      <HistoryTable entityId={entityId} />
    </main>
  );
}
