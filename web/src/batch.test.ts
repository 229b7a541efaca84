import { describe, expect, it } from "vitest";
import { splitRows } from "./batch";

describe("charts' series in one answer", () => {
  it("splits rows into series per key, in run order then group order", () => {
    const columns = {
      iteration_id: ["b", "b", "a", "a", "a", "b"],
      key: ["loss", "loss", "loss", "loss", "acc", "loss"],
      group: ["", "", "", "", "", "val"],
      step: [0, 1, 0, 1, 0, 0],
      value: [5, 4, 3, 2, 1, 9],
      recorded_at: [0, 0, 0, 0, 0, 0],
    };
    const out = splitRows(6, columns, ["a", "b"]);
    const loss = out.get("loss")!.series;
    expect(loss.map((s) => [s.run, s.group, Array.from(s.value)])).toEqual([
      ["a", "", [3, 2]],
      ["b", "", [5, 4]],
      ["b", "val", [9]],
    ]);
    expect(out.get("acc")!.series.map((s) => s.run)).toEqual(["a"]);
    expect(splitRows(0, { iteration_id: [], key: [], group: [], step: [], value: [], recorded_at: [] }, []).size).toBe(0);
  });
});
