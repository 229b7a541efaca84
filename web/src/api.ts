// The API client: JSON or Arrow IPC (decoded with flechette), the sign-in token kept in
// sessionStorage, errors in the server's one shape ({error: {code, message, details}}).
import { tableFromIPC } from "@uwdata/flechette";

const TOKEN = "deardiary.token";
const USER = "deardiary.user";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN);
}

export function signedInUser(): string | null {
  return sessionStorage.getItem(USER);
}

export function signOut(): void {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(USER);
}

type Query = Record<string, string | number | boolean | string[] | undefined | null>;

export function url(path: string, query: Query = {}): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) for (const one of v) search.append(k, one);
    else search.set(k, String(v));
  }
  const s = search.toString();
  return s ? `/api/v1${path}?${s}` : `/api/v1${path}`;
}

/** Where the page sends people whose token is missing or expired (set by the app). */
export let onUnauthenticated: () => void = () => {};
export function setOnUnauthenticated(f: () => void): void {
  onUnauthenticated = f;
}

async function send(path: string, query: Query, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set("Authorization", `Bearer ${t}`);
  const response = await fetch(url(path, query), { ...init, headers });
  if (!response.ok) {
    let code = "UNKNOWN";
    let message = `${response.status} ${response.statusText}`;
    let details: Record<string, unknown> = {};
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
      details = body.error?.details ?? {};
    } catch {
      /* not the error shape */
    }
    if (response.status === 401) onUnauthenticated();
    throw new ApiError(response.status, code, message, details);
  }
  return response;
}

export async function get<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T> {
  const response = await send(path, query, { signal, headers: { Accept: "application/json" } });
  return (await response.json()) as T;
}

export interface PageOf<T> {
  items: T[];
  total: number;
}

export async function items<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T[]> {
  return (await get<PageOf<T>>(path, query, signal)).items;
}

export type Columns = Record<string, ArrayLike<unknown>>;

/** An Arrow IPC answer as columns (int64 as numbers, timestamps as epoch ms). */
export async function arrow(
  path: string,
  query: Query = {},
  signal?: AbortSignal,
): Promise<{ numRows: number; columns: Columns }> {
  const response = await send(path, { ...query, format: "arrow" }, { signal });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const table = tableFromIPC(bytes, { useBigInt: false, useDate: false });
  const columns: Columns = {};
  for (const name of table.names) columns[name] = table.getChild(name).toArray() as ArrayLike<unknown>;
  return { numRows: table.numRows, columns };
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  const response = await send(path, {}, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await response.json()) as T;
}

export async function login(username: string, password: string): Promise<void> {
  const answer = await post<{ token: string }>("/auth/login", { username, password });
  sessionStorage.setItem(TOKEN, answer.token);
  sessionStorage.setItem(USER, username);
}

/** Raw bytes (artifact previews), with the token. */
export async function bytes(path: string, signal?: AbortSignal): Promise<Response> {
  return send(path, {}, { signal });
}

function newId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Append events through the gateway (tags, notes: everything is an event). */
export async function sendEvents(bodies: Record<string, unknown>[]): Promise<{ last_offset: number }> {
  const events = bodies.map((body) => ({
    event_id: newId(),
    key: String(body.entity_id ?? body.iteration_id ?? ""),
    client_time: Date.now() * 1000,
    body,
  }));
  return post("/events", { events });
}

export interface Project {
  project_id: string;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
  tags: Record<string, string>;
}
export interface Experiment {
  experiment_id: string;
  project_id: string;
  name: string;
  description: string;
  status: string;
  created_at: string;
  updated_at: string;
}
export interface Iteration {
  iteration_id: string;
  experiment_id: string;
  project_id: string;
  name: string;
  status: string;
  display_status: string;
  error_message: string;
  notes: string;
  tags: Record<string, string> | string;
  environment: Record<string, unknown> | string | null;
  parent_iteration_id: string | null;
  created_by: string;
  created_at: string;
  end_date: string | null;
  duration_s: number;
  params: Record<string, string> | string;
  metrics: Record<string, number> | string;
  group_metrics?: Record<string, Record<string, number>> | string;
}

/** A JSON column the server may send as text. */
export function jsonValue<T>(v: T | string | null | undefined, fallback: T): T {
  if (v === null || v === undefined) return fallback;
  if (typeof v === "string") {
    try {
      return JSON.parse(v) as T;
    } catch {
      return fallback;
    }
  }
  return v;
}
