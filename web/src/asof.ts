// Time travel in the page: `?as_of=` in a view's URL (a log offset, or an ISO time) makes
// every read of that view ask the server for the state as it stood then, so a link to
// the past can be shared. Views under as_of are read-only and do not poll.
import { fmtTime } from "./format";
import { href } from "./route";

/** The as_of of a URL's query ("" for now); only values the server would accept. */
export function asOfOf(query: URLSearchParams): string {
  const v = (query.get("as_of") ?? "").trim();
  return isAsOf(v) ? v : "";
}

export const OFFSET = /^[0-9]{1,19}$/;
const TIME = /^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$/;

export function isAsOf(v: string): boolean {
  return OFFSET.test(v) || TIME.test(v);
}

/** How an as_of reads to a person. */
export function describeAsOf(asOf: string): string {
  if (OFFSET.test(asOf)) return `log offset ${asOf}`;
  return fmtTime(toUtcMs(asOf));
}

/** An ISO time as epoch ms (a time without a zone is UTC, as the server reads it). */
export function toUtcMs(iso: string): number {
  const zoned = /(Z|[+-][0-9]{2}:?[0-9]{2})$/.test(iso) ? iso : `${iso.length === 10 ? `${iso}T00:00:00` : iso}Z`;
  return Date.parse(zoned.replace(" ", "T"));
}

/** A datetime-local input's value (local time) as the ISO UTC time the server takes. */
export function localInputToIso(value: string): string {
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? "" : new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

/** An ISO time as a datetime-local input's value (local time, to the second). */
export function isoToLocalInput(iso: string): string {
  const ms = toUtcMs(iso);
  if (Number.isNaN(ms)) return "";
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `path` keeping the view's as_of (and any other query values). */
export function withAsOf(path: string, asOf: string, query: Record<string, string | string[] | undefined> = {}): string {
  return href(path, { ...query, as_of: asOf || undefined });
}

/** Whether a history event (offset, log time) is after the bound, so not in that state. */
export function afterBound(asOf: string, offset: number, logTime: string | number): boolean {
  if (!asOf) return false;
  if (OFFSET.test(asOf)) return offset > Number(asOf);
  const t = typeof logTime === "number" ? logTime : toUtcMs(logTime);
  return t > toUtcMs(asOf);
}

