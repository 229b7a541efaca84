import type { ComponentChildren } from "preact";
import { ApiError } from "./api";
import { Link } from "./nav";

export function ErrorBox({ error }: { error: Error | undefined }) {
  if (!error) return null;
  if (error instanceof ApiError && error.status === 403) {
    return (
      <div class="error" role="alert">
        <strong>No access.</strong> You are not granted this project ({error.code}): {error.message}
      </div>
    );
  }
  if (error instanceof ApiError && error.status === 404) {
    return (
      <div class="error" role="alert">
        <strong>Not found.</strong> {error.message}
      </div>
    );
  }
  const code = error instanceof ApiError ? ` (${error.code})` : "";
  return (
    <div class="error" role="alert">
      <strong>Something went wrong{code}.</strong> {error.message}
    </div>
  );
}

export function Loading({ when }: { when: boolean }) {
  return when ? <div class="loading" aria-busy="true">Loading…</div> : null;
}

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status.toLowerCase()}`}>{status}</span>;
}

export function Tabs({ items, current }: { items: [string, string, string][]; current: string }) {
  return (
    <nav class="tabs" aria-label="views">
      {items.map(([key, label, href]) => (
        <Link key={key} href={href} class={key === current ? "tab active" : "tab"} aria-current={key === current ? "page" : undefined}>
          {label}
        </Link>
      ))}
    </nav>
  );
}

export function Crumbs({ children }: { children: ComponentChildren }) {
  return <div class="crumbs">{children}</div>;
}

export function KeyValues({ rows, empty = "none" }: { rows: [string, ComponentChildren][]; empty?: string }) {
  if (rows.length === 0) return <p class="muted">{empty}</p>;
  return (
    <table class="kv">
      <tbody>
        {rows.map(([k, v]) => (
          <tr key={k}>
            <th scope="row">{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
