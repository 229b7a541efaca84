import { describe, expect, it } from "vitest";
import { around, bars, byKey, checkpointMetrics, type Histogram, type MediaItem, overview, stepIndex, stepParam, systemKeys, systemSections, trainingKeys } from "./media";

function item(key: string, step: number, index = 0, kind: MediaItem["kind"] = "image"): MediaItem {
  return { key, step, index, kind, content_hash: `${key}${step}${index}`, size_bytes: 1, media_type: "image/png", caption: "", text: "", width: 1, height: 1, metadata: {}, key_steps: 1 };
}

describe("media", () => {
  it("groups items by key, steps ascending, images before text", () => {
    const keys = byKey([item("t", 1, 0, "text"), item("img", 5), item("img", 2, 1), item("img", 2, 0)]);
    expect(keys.map((k) => k.key)).toEqual(["img", "t"]);
    expect(keys[0].steps).toEqual([2, 5]);
    expect(keys[0].at.get(2)!.map((m) => m.index)).toEqual([0, 1]);
  });

  it("shows the step a URL asks for, or the one before it", () => {
    expect(stepParam(null)).toBe(null);
    expect(stepParam("x")).toBe(null);
    expect(stepParam("12")).toBe(12);
    expect(stepIndex([0, 10, 20], null)).toBe(2);
    expect(stepIndex([0, 10, 20], 10)).toBe(1);
    expect(stepIndex([0, 10, 20], 15)).toBe(1);
    expect(stepIndex([0, 10, 20], -5)).toBe(0);
    expect(stepIndex([0, 10, 20], 99)).toBe(2);
    expect(stepIndex([], 3)).toBe(0);
  });

  it("keeps a thumbnail window around the current step", () => {
    expect(around(3, 1, 24)).toEqual([0, 1, 2]);
    expect(around(100, 0, 4)).toEqual([0, 1, 2, 3]);
    expect(around(100, 50, 4)).toEqual([48, 49, 50, 51]);
    expect(around(100, 99, 4)).toEqual([96, 97, 98, 99]);
  });

  it("draws bars from edges and an overview normalised to its peak", () => {
    const h = (step: number, edges: number[], counts: number[]): Histogram => ({ key: "w", step, edges, counts, count: 0, min: 0, max: 0, key_steps: 1 });
    expect(bars(h(0, [0, 1, 2], [3, 4]))).toEqual([[0, 1, 2], [3, 4, null]]);
    const o = overview([h(0, [0, 1, 2], [3, 1]), h(1, [2, 3, 4], [0, 6])], 4);
    expect([o.lo, o.hi]).toEqual([0, 4]);
    expect(Array.from(o.cells[0])).toEqual([0.5, 1 / 6, 0, 0]);
    expect(Array.from(o.cells[1])).toEqual([0, 0, 0, 1]);
  });

  it("lists checkpoint metrics and splits system metrics into sections", () => {
    expect(checkpointMetrics([{ loss: 1 }, { acc: 0.5, loss: 2 }])).toEqual(["acc", "loss"]);
    const names = [
      { key: "loss", group: "" },
      { key: "loss", group: "val" },
      { key: "cpu.percent", group: "system" },
      { key: "gpu.10.power_w", group: "system" },
      { key: "gpu.2.power_w", group: "system" },
      { key: "network.sent_mb_s", group: "system" },
      { key: "custom", group: "system" },
    ];
    expect(trainingKeys(names)).toEqual(["loss"]);
    expect(systemSections(systemKeys(names))).toEqual([
      ["CPU", ["cpu.percent"]],
      ["Disk and network", ["network.sent_mb_s"]],
      ["GPU", ["gpu.2.power_w", "gpu.10.power_w"]],
      ["Other", ["custom"]],
    ]);
  });
});
