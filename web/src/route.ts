// The page's URLs: every view is addressable, so a link can be shared.
// services/web/routes.py serves index.html for these first path segments.

export type ExperimentTab = "runs" | "charts" | "compare" | "sweep" | "history";
export type RunTab = "overview" | "charts" | "system" | "media" | "checkpoints" | "logs" | "artifacts" | "history";

export type Route =
  | { name: "projects" }
  | { name: "project"; projectId: string }
  | { name: "experiment"; experimentId: string; tab: ExperimentTab }
  | { name: "run"; iterationId: string; tab: RunTab }
  | { name: "models" }
  | { name: "model"; modelId: string }
  | { name: "history"; entityId: string }
  | { name: "login" }
  | { name: "notfound"; path: string };

const EXPERIMENT_TABS: ExperimentTab[] = ["runs", "charts", "compare", "sweep", "history"];
const RUN_TABS: RunTab[] = ["overview", "charts", "system", "media", "checkpoints", "logs", "artifacts", "history"];

export function parseRoute(pathname: string): Route {
  const parts = pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  const [head, id, tab] = parts;
  if (parts.length === 0 || (head === "projects" && parts.length === 1)) return { name: "projects" };
  if (head === "p" && id && parts.length === 2) return { name: "project", projectId: id };
  if (head === "e" && id && parts.length <= 3) {
    const t = (tab ?? "runs") as ExperimentTab;
    if (EXPERIMENT_TABS.includes(t)) return { name: "experiment", experimentId: id, tab: t };
  }
  if (head === "r" && id && parts.length <= 3) {
    const t = (tab ?? "overview") as RunTab;
    if (RUN_TABS.includes(t)) return { name: "run", iterationId: id, tab: t };
  }
  if (head === "models" && parts.length === 1) return { name: "models" };
  if (head === "models" && id && parts.length === 2) return { name: "model", modelId: id };
  if (head === "history" && id && parts.length === 2) return { name: "history", entityId: id };
  if (head === "login" && parts.length === 1) return { name: "login" };
  return { name: "notfound", path: pathname };
}

const enc = encodeURIComponent;

export function routePath(route: Route): string {
  switch (route.name) {
    case "projects":
      return "/";
    case "project":
      return `/p/${enc(route.projectId)}`;
    case "experiment":
      return `/e/${enc(route.experimentId)}` + (route.tab === "runs" ? "" : `/${route.tab}`);
    case "run":
      return `/r/${enc(route.iterationId)}` + (route.tab === "overview" ? "" : `/${route.tab}`);
    case "models":
      return "/models";
    case "model":
      return `/models/${enc(route.modelId)}`;
    case "history":
      return `/history/${enc(route.entityId)}`;
    case "login":
      return "/login";
    case "notfound":
      return route.path;
  }
}

/** A URL with query parameters; empty values and empty lists are left out. */
export function href(path: string, query: Record<string, string | string[] | undefined> = {}): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === "") continue;
    if (Array.isArray(v)) {
      if (v.length) search.set(k, v.join(","));
    } else search.set(k, v);
  }
  const s = search.toString();
  return s ? `${path}?${s}` : path;
}

/** A comma-separated list parameter ("" -> []). */
export function listParam(value: string | null): string[] {
  return value ? value.split(",").filter((x) => x !== "") : [];
}
