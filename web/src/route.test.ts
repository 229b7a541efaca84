import { describe, expect, it } from "vitest";
import { href, listParam, parseRoute, routePath, type Route } from "./route";

describe("routes", () => {
  it("parses every view and formats it back", () => {
    const cases: [string, Route][] = [
      ["/", { name: "projects" }],
      ["/p/abc", { name: "project", projectId: "abc" }],
      ["/e/x1", { name: "experiment", experimentId: "x1", tab: "runs" }],
      ["/e/x1/charts", { name: "experiment", experimentId: "x1", tab: "charts" }],
      ["/e/x1/sweep", { name: "experiment", experimentId: "x1", tab: "sweep" }],
      ["/r/i9", { name: "run", iterationId: "i9", tab: "overview" }],
      ["/r/i9/logs", { name: "run", iterationId: "i9", tab: "logs" }],
      ["/r/i9/media", { name: "run", iterationId: "i9", tab: "media" }],
      ["/r/i9/checkpoints", { name: "run", iterationId: "i9", tab: "checkpoints" }],
      ["/r/i9/system", { name: "run", iterationId: "i9", tab: "system" }],
      ["/models", { name: "models" }],
      ["/models/m", { name: "model", modelId: "m" }],
      ["/history/h", { name: "history", entityId: "h" }],
      ["/login", { name: "login" }],
    ];
    for (const [path, route] of cases) {
      expect(parseRoute(path)).toEqual(route);
      expect(routePath(route)).toBe(path);
    }
  });

  it("answers not found for unknown paths and tabs", () => {
    expect(parseRoute("/e/x1/nope").name).toBe("notfound");
    expect(parseRoute("/zzz").name).toBe("notfound");
    expect(parseRoute("/r/a/b/c").name).toBe("notfound");
  });

  it("decodes and encodes ids", () => {
    expect(parseRoute("/p/a%2Fb")).toEqual({ name: "project", projectId: "a/b" });
    expect(routePath({ name: "project", projectId: "a/b" })).toBe("/p/a%2Fb");
  });

  it("builds query strings without empty values", () => {
    expect(href("/e/1/compare", { runs: ["a", "b"], as_of: "" })).toBe("/e/1/compare?runs=a%2Cb");
    expect(href("/x", { runs: [] })).toBe("/x");
    expect(listParam("a,,b")).toEqual(["a", "b"]);
    expect(listParam(null)).toEqual([]);
  });
});
