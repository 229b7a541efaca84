// Pure helpers for charts and sweeps (unit-tested in series.test.ts).

/** Exponential moving average with TensorBoard's debiasing; weight in [0, 1). NaN kept. */
export function smooth(values: ArrayLike<number | null>, weight: number): (number | null)[] {
  const out: (number | null)[] = new Array(values.length);
  if (weight <= 0) {
    for (let i = 0; i < values.length; i++) out[i] = values[i];
    return out;
  }
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

/** The best value so far at each position (min or max goal); NaN and null skipped. */
export function bestSoFar(values: (number | null)[], goal: "min" | "max"): (number | null)[] {
  let best: number | null = null;
  return values.map((v) => {
    if (v !== null && Number.isFinite(v)) {
      if (best === null || (goal === "min" ? v < best : v > best)) best = v;
    }
    return best;
  });
}

export interface Series {
  label: string;
  x: Float64Array;
  y: Float64Array;
}

/**
 * Align several series onto one sorted x axis (uPlot's data layout): the union of x
 * values, with null where a series has no point.
 */
export function align(series: Series[]): [number[], ...(number | null)[][]] {
  const xs = new Set<number>();
  for (const s of series) for (const x of s.x) xs.add(x);
  const x = [...xs].sort((a, b) => a - b);
  if (series.length === 1) {
    return [Array.from(series[0].x), Array.from(series[0].y, (v) => (Number.isNaN(v) ? null : v))];
  }
  const index = new Map<number, number>();
  x.forEach((v, i) => index.set(v, i));
  const ys = series.map((s) => {
    const y: (number | null)[] = new Array(x.length).fill(null);
    for (let i = 0; i < s.x.length; i++) {
      const v = s.y[i];
      y[index.get(s.x[i])!] = Number.isNaN(v) ? null : v;
    }
    return y;
  });
  return [x, ...ys];
}

/** Whether a param's values are all numbers (then plotted on a numeric axis). */
export function numericValues(values: (string | null)[]): boolean {
  let any = false;
  for (const v of values) {
    if (v === null || v === "") continue;
    if (!Number.isFinite(Number(v))) return false;
    any = true;
  }
  return any;
}

/** Positions of values on an axis scaled to [0, 1]: numbers linearly, text by rank. */
export function axisScale(values: (string | null)[]): (v: string | null) => number | null {
  if (numericValues(values)) {
    const nums = values.filter((v) => v !== null && v !== "").map(Number);
    const lo = Math.min(...nums);
    const hi = Math.max(...nums);
    return (v) => (v === null || v === "" ? null : hi === lo ? 0.5 : (Number(v) - lo) / (hi - lo));
  }
  const cats = categories(values);
  return (v) => {
    if (v === null) return null;
    const i = cats.indexOf(v);
    return cats.length <= 1 ? 0.5 : i / (cats.length - 1);
  };
}

/** The distinct values of a categorical axis, in axis order (bottom to top). */
export function categories(values: (string | null)[]): string[] {
  return [...new Set(values.filter((v): v is string => v !== null))].sort();
}

/** Keys whose values differ between runs (missing counts as a value). */
export function differingKeys(rows: Record<string, string>[]): Set<string> {
  const keys = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) keys.add(k);
  const out = new Set<string>();
  for (const k of keys) {
    const first = rows[0]?.[k];
    if (rows.some((r) => r[k] !== first)) out.add(k);
  }
  return out;
}

export type Goal = "min" | "max";

const HIGHER_IS_BETTER = /acc|f1|auc|precision|recall|score|reward|return|map|iou|bleu|rouge|dice|r2|ndcg|hit|top\d|throughput|samples_per_s/i;

/** A metric's goal when nobody chose one: max for accuracies, scores and rewards, min
 * otherwise (losses, errors, times). */
export function defaultGoal(key: string): Goal {
  const last = key.split(/[/.]/).pop() ?? key;
  return HIGHER_IS_BETTER.test(last) && !/loss|err|mse|mae|rmse|perplexity|time|latency/i.test(last) ? "max" : "min";
}

/** The goals chosen in the URL (`goals=acc:max,lr_loss:min`). */
export function parseGoals(text: string | null): Map<string, Goal> {
  const out = new Map<string, Goal>();
  for (const item of (text ?? "").split(",")) {
    const at = item.lastIndexOf(":");
    const goal = item.slice(at + 1);
    if (at > 0 && (goal === "min" || goal === "max")) out.set(item.slice(0, at), goal);
  }
  return out;
}

/** Which of the values are the best by the goal (ties all count; NaN never does); none
 * when fewer than two values are there to compare. */
export function bestOf(values: (number | null | undefined)[], goal: Goal): Set<number> {
  const finite = values.map((v, i) => [v, i] as const).filter((p): p is readonly [number, number] => typeof p[0] === "number" && !Number.isNaN(p[0]));
  if (finite.length < 2) return new Set();
  const best = goal === "min" ? Math.min(...finite.map((p) => p[0])) : Math.max(...finite.map((p) => p[0]));
  return new Set(finite.filter((p) => p[0] === best).map((p) => p[1]));
}
