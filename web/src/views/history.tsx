// An entity's history: every event about it, who sent it and when -- each row a link to
// the entity's view as of that event (time travel); under an as_of, the events after it
// are shown dimmed (not part of the state shown).
import { afterBound } from "../asof";
import { items } from "../api";
import { Crumbs, ErrorBox, Loading } from "../common";
import { fmtTime } from "../format";
import { useLoad } from "../hooks";
import { Link } from "../nav";
import { href } from "../route";

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

/** Where an entity is shown, as of an offset (null: it has no view of its own). */
export function viewAsOf(kind: string, id: string, offset: number): string | null {
  const as_of = String(offset);
  if (kind === "iteration") return href(`/r/${id}`, { as_of });
  if (kind === "experiment") return href(`/e/${id}`, { as_of });
  if (kind === "project") return href(`/p/${id}`);
  return null;
}

export function HistoryTable({
  entityId,
  asOf = "",
  asOfLink,
  what = "it",
}: {
  entityId: string;
  asOf?: string;
  asOfLink?: (offset: number) => string;
  what?: string;
}) {
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
              <th />
            </tr>
          </thead>
          <tbody>
            {data.map((e) => {
              const link = asOfLink ? asOfLink(e.offset) : viewAsOf(e.entity_kind, e.entity_id, e.offset);
              const later = afterBound(asOf, e.offset, e.log_time);
              return (
                <tr key={e.event_id} class={later ? "after-bound" : ""} data-offset={e.offset}>
                  <td>{fmtTime(e.log_time)}</td>
                  <td class="num">
                    {e.partition}:{e.offset}
                  </td>
                  <td>{e.actor || <span class="muted">local</span>}</td>
                  <td>{e.type.replace(/_/g, " ")}</td>
                  <td class="summary">{typeof e.summary === "string" ? e.summary : JSON.stringify(e.summary)}</td>
                  <td>
                    {link && (
                      <Link href={link} title={`show ${what} as it stood right after this event`}>
                        as of this event
                      </Link>
                    )}
                  </td>
                </tr>
              );
            })}
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
