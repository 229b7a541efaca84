import { useEffect } from "preact/hooks";
import { setOnUnauthenticated, signedInUser, signOut } from "./api";
import { Link, navigate, useLocation } from "./nav";
import { parseRoute } from "./route";
import { ExperimentPage } from "./views/experiment";
import { HistoryPage } from "./views/history";
import { Login } from "./views/login";
import { ModelPage, Models } from "./views/models";
import { ProjectPage, Projects } from "./views/projects";
import { RunPage } from "./views/run";

setOnUnauthenticated(() => {
  if (location.pathname !== "/login") {
    signOut();
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
  }
});

export function App() {
  const { pathname, query } = useLocation();
  const route = parseRoute(pathname);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (e.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(target.tagName)) {
        const search = document.querySelector<HTMLInputElement>("input[type=search]");
        if (search) {
          e.preventDefault();
          search.focus();
        }
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);
  const user = signedInUser();
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          DearDiary
        </Link>
        <nav aria-label="main">
          <Link href="/">Projects</Link>
          <Link href="/models">Models</Link>
        </nav>
        <span class="spacer" />
        {user && (
          <span class="user">
            {user}{" "}
            <button
              type="button"
              class="small"
              onClick={() => {
                signOut();
                navigate("/login");
              }}
            >
              sign out
            </button>
          </span>
        )}
      </header>
      {route.name === "projects" && <Projects />}
      {route.name === "project" && <ProjectPage key={route.projectId} projectId={route.projectId} />}
      {route.name === "experiment" && <ExperimentPage key={route.experimentId} experimentId={route.experimentId} tab={route.tab} query={query} />}
      {route.name === "run" && <RunPage key={route.iterationId} iterationId={route.iterationId} tab={route.tab} query={query} />}
      {route.name === "models" && <Models />}
      {route.name === "model" && <ModelPage key={route.modelId} modelId={route.modelId} />}
      {route.name === "history" && <HistoryPage key={route.entityId} entityId={route.entityId} />}
      {route.name === "login" && <Login next={query.get("next") ?? "/"} />}
      {route.name === "notfound" && (
        <main>
          <h1>Not found</h1>
          <p>
            No page at <code>{route.path}</code>. <Link href="/">Projects</Link>
          </p>
        </main>
      )}
    </>
  );
}
