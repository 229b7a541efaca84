// Navigation without a router library: history.pushState + a location signal.
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

type Listener = () => void;
const listeners = new Set<Listener>();

export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
  if (!replace) window.scrollTo(0, 0);
}

/** Change query parameters of the current URL (replace: no history entry per keystroke). */
export function setQuery(changes: Record<string, string | string[] | null>, replace = true): void {
  const search = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    const value = Array.isArray(v) ? v.join(",") : v;
    if (value === null || value === "") search.delete(k);
    else search.set(k, value);
  }
  const s = search.toString();
  navigate(location.pathname + (s ? `?${s}` : ""), replace);
}

addEventListener("popstate", () => listeners.forEach((l) => l()));

export function useLocation(): { pathname: string; query: URLSearchParams } {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return { pathname: location.pathname, query: new URLSearchParams(location.search) };
}

export function Link(
  props: { href: string; children: ComponentChildren } & JSX.HTMLAttributes<HTMLAnchorElement>,
) {
  const { href, children, ...rest } = props;
  return (
    <a
      {...rest}
      href={href}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}
