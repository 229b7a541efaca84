import { describe, expect, it } from "vitest";
import { columnsOf, compareCells, formatSort, lines, metricColumn, parseSort, sortedOrder, visibleColumns } from "./table";

describe("runs table model", () => {
  it("sorts numbers numerically with missing values last, both directions", () => {
    const v = [3, null, 1, NaN, 2];
    expect(sortedOrder(5, (i) => v[i], true, false)).toEqual([2, 4, 0, 1, 3]);
    expect(sortedOrder(5, (i) => v[i], true, true)).toEqual([0, 4, 2, 1, 3]);
  });

  it("sorts numeric text as numbers and other text naturally", () => {
    expect(compareCells("10", "9", false)).toBeGreaterThan(0);
    expect(compareCells("run-10", "run-9", false)).toBeGreaterThan(0);
    expect(compareCells(null, "a", false)).toBeGreaterThan(0);
  });

  it("round-trips the sort parameter", () => {
    expect(parseSort("metrics.loss.min:desc")).toEqual({ column: "metrics.loss.min", desc: true });
    expect(formatSort(parseSort("name:asc"))).toBe("name:asc");
    expect(parseSort(null)).toBeNull();
  });

  it("groups rows under a header per value and collapses groups", () => {
    const g = ["0.1", "0.01", "0.1", null];
    const out = lines([0, 1, 2, 3], (i) => g[i], new Set(["0.01"]));
    expect(out).toEqual([
      { type: "group", value: "(none)", count: 1, collapsed: false },
      { type: "row", row: 3 },
      { type: "group", value: "0.01", count: 1, collapsed: true },
      { type: "group", value: "0.1", count: 2, collapsed: false },
      { type: "row", row: 0 },
      { type: "row", row: 2 },
    ]);
  });

  it("finds the columns in view among thousands", () => {
    const cols = columnsOf(
      Array.from({ length: 1000 }, (_, i) => ({ kind: "metric" as const, key: `m${i}`, iterations: 1 })),
    ).slice(1);
    expect(cols.length).toBe(5 + 3000);
    const view = visibleColumns(cols, 274, 50_000, 1200, 0);
    const x0 = 274 + cols.slice(0, view.first).reduce((w, c) => w + c.width, 0);
    expect(view.offset).toBe(x0);
    expect(x0).toBeLessThanOrEqual(50_000 + 274);
    expect(view.last - view.first).toBeLessThan(15);
  });

  it("puts a metric's groups side by side, named as the API names them", () => {
    const cols = columnsOf([
      { kind: "metric", key: "loss", group: "val", iterations: 2 },
      { kind: "param", key: "lr", iterations: 2 },
      { kind: "metric", key: "acc", group: "", iterations: 2 },
      { kind: "metric", key: "loss", group: "", iterations: 2 },
    ]).filter((c) => c.kind !== "base");
    expect(cols.map((c) => c.name)).toEqual([
      "params.lr",
      "metrics.acc.last",
      "metrics.acc.min",
      "metrics.acc.max",
      "metrics.loss.last",
      "metrics.loss.min",
      "metrics.loss.max",
      "metrics@val.loss.last",
      "metrics@val.loss.min",
      "metrics@val.loss.max",
    ]);
    expect(cols[7].label).toBe("loss · val (last)");
    expect(metricColumn("loss", "", "min")).toBe("metrics.loss.min");
  });
});
