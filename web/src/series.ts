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
  const cats = [...new Set(values.filter((v): v is string => v !== null))].sort();
  return (v) => {
    if (v === null) return null;
    const i = cats.indexOf(v);
    return cats.length <= 1 ? 0.5 : i / (cats.length - 1);
  };
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
