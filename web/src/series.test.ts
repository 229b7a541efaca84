import { describe, expect, it } from "vitest";
import { align, axisScale, bestOf, bestSoFar, categories, defaultGoal, differingKeys, parseGoals, smooth } from "./series";

describe("series helpers", () => {
  it("smooths with debiasing and keeps gaps", () => {
    expect(smooth([1, 1, 1], 0.9)).toEqual([1, 1, 1].map((v) => expect.closeTo(v, 10)));
    const s = smooth([0, 10, null, 10], 0.5);
    expect(s[2]).toBeNull();
    expect(s[1]).toBeCloseTo((0.5 * 0 * 0.5 + 0.5 * 10) / 0.75);
    expect(smooth([1, 2], 0)).toEqual([1, 2]);
  });

  it("tracks the best value so far", () => {
    expect(bestSoFar([3, 5, 1, null, 2], "min")).toEqual([3, 3, 1, 1, 1]);
    expect(bestSoFar([3, 5, 1], "max")).toEqual([3, 5, 5]);
  });

  it("aligns series onto the union of x values", () => {
    const a = { label: "a", x: new Float64Array([0, 2]), y: new Float64Array([1, 3]) };
    const b = { label: "b", x: new Float64Array([1, 2]), y: new Float64Array([5, NaN]) };
    expect(align([a, b])).toEqual([
      [0, 1, 2],
      [1, null, 3],
      [null, 5, null],
    ]);
  });

  it("scales numeric and categorical axes to [0, 1]", () => {
    const num = axisScale(["1", "3", null]);
    expect(num("2")).toBe(0.5);
    expect(num(null)).toBeNull();
    const cat = axisScale(["adam", "sgd", "adam"]);
    expect(cat("adam")).toBe(0);
    expect(cat("sgd")).toBe(1);
  });

  it("finds params whose values differ", () => {
    expect(differingKeys([{ lr: "0.1", b: "1" }, { lr: "0.01", b: "1" }, { b: "1" }])).toEqual(new Set(["lr"]));
  });

  it("guesses a metric's goal and reads the chosen ones from the URL", () => {
    expect(defaultGoal("loss")).toBe("min");
    expect(defaultGoal("val/acc")).toBe("max");
    expect(defaultGoal("train.f1")).toBe("max");
    expect(defaultGoal("error_rate")).toBe("min");
    expect(defaultGoal("top5_accuracy")).toBe("max");
    expect([...parseGoals("acc:min,a:b:max,bad,x:sideways")]).toEqual([
      ["acc", "min"],
      ["a:b", "max"],
    ]);
  });

  it("finds the best values by the goal, ties included, NaN never", () => {
    expect([...bestOf([3, 1, 1, NaN, undefined], "min")]).toEqual([1, 2]);
    expect([...bestOf([3, 1, NaN], "max")]).toEqual([0]);
    expect(bestOf([3, undefined], "max").size).toBe(0);
  });

  it("lists a categorical axis bottom to top", () => {
    expect(categories(["sgd", null, "adam", "sgd"])).toEqual(["adam", "sgd"]);
  });
});
