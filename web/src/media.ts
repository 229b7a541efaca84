// What the run page's Media, Checkpoints and System tabs compute from the API's rows
// (pure, so vitest covers it): media grouped by key and step, histogram bars and the
// overview across steps, checkpoint metric columns, system metrics by section.

export type MediaKind = "image" | "figure" | "text" | "table";

export interface MediaItem {
  key: string;
  step: number;
  index: number;
  kind: MediaKind;
  content_hash: string;
  size_bytes: number;
  media_type: string;
  caption: string;
  text: string;
  width: number;
  height: number;
  metadata: Record<string, unknown> | string;
  /** How many steps the key has (in the window asked for); more than listed when sampled. */
  key_steps: number;
}

export interface MediaKey {
  key: string;
  kind: MediaKind;
  /** distinct steps, ascending */
  steps: number[];
  /** the items of each step, by index */
  at: Map<number, MediaItem[]>;
}

/** Media rows (in (key, step, index) order or not) as one entry per key, keys sorted by
 * kind (images, figures, tables, text) then name. */
export function byKey(items: MediaItem[]): MediaKey[] {
  const keys = new Map<string, MediaKey>();
  for (const m of items) {
    let k = keys.get(m.key);
    if (!k) keys.set(m.key, (k = { key: m.key, kind: m.kind, steps: [], at: new Map() }));
    let list = k.at.get(m.step);
    if (!list) k.at.set(m.step, (list = []));
    list.push(m);
  }
  const order: MediaKind[] = ["image", "figure", "table", "text"];
  const out = [...keys.values()];
  for (const k of out) {
    k.steps = [...k.at.keys()].sort((a, b) => a - b);
    for (const list of k.at.values()) list.sort((a, b) => a.index - b.index);
  }
  return out.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The step a URL asks for (`?step=`), null for none or nonsense. */
export function stepParam(text: string | null): number | null {
  if (text === null || text.trim() === "") return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

/** Which of `steps` (ascending) to show for the step asked for: the last at or before
 * it (the first when it is before them all), the latest when none is asked for. */
export function stepIndex(steps: number[], want: number | null): number {
  if (steps.length === 0) return 0;
  if (want === null) return steps.length - 1;
  let lo = 0;
  let hi = steps.length - 1;
  if (want <= steps[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (steps[mid] <= want) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Up to `n` positions of `steps` around `current` (a thumbnail strip that follows it). */
export function around(count: number, current: number, n: number): number[] {
  if (count <= n) return Array.from({ length: count }, (_, i) => i);
  const start = Math.max(0, Math.min(count - n, current - Math.floor(n / 2)));
  return Array.from({ length: n }, (_, i) => start + i);
}

export interface Histogram {
  key: string;
  step: number;
  edges: number[];
  counts: number[];
  count: number;
  min: number;
  max: number;
  /** How many steps the key has (in the window asked for); more than listed when sampled. */
  key_steps: number;
}

/** A histogram as bars for uPlot: x = each bin's left edge (and the last right edge
 * with no bar), y = its count. */
export function bars(h: Histogram): [number[], (number | null)[]] {
  return [h.edges.slice(), [...h.counts, null]];
}

/** The overview across steps: each step's counts re-binned onto `rows` common value bins
 * between the smallest and largest edge of all steps, as fractions of the largest
 * re-binned count (0..1) -- a heat map with a column per step. */
export function overview(hs: Histogram[], rows: number): { lo: number; hi: number; cells: Float64Array[] } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const h of hs) {
    if (!h.edges.length) continue;
    lo = Math.min(lo, h.edges[0]);
    hi = Math.max(hi, h.edges[h.edges.length - 1]);
  }
  if (!(hi > lo)) {
    hi = lo + 1;
  }
  const span = hi - lo;
  let peak = 0;
  const cells = hs.map((h) => {
    const col = new Float64Array(rows);
    for (let b = 0; b < h.counts.length; b++) {
      const a = h.edges[b];
      const z = h.edges[b + 1];
      if (!(z >= a)) continue;
      // spread the bin's count over the rows it covers, by overlap
      const r0 = Math.max(0, Math.floor(((a - lo) / span) * rows));
      const r1 = Math.min(rows - 1, Math.floor(((z - lo) / span) * rows - 1e-9));
      if (r1 <= r0 || z === a) {
        col[Math.min(rows - 1, r0)] += h.counts[b];
        continue;
      }
      for (let r = r0; r <= r1; r++) {
        const rowLo = lo + (r / rows) * span;
        const rowHi = lo + ((r + 1) / rows) * span;
        const overlap = Math.max(0, Math.min(z, rowHi) - Math.max(a, rowLo));
        col[r] += (h.counts[b] * overlap) / (z - a);
      }
    }
    for (const v of col) peak = Math.max(peak, v);
    return col;
  });
  if (peak > 0) for (const col of cells) for (let r = 0; r < rows; r++) col[r] /= peak;
  return { lo, hi, cells };
}

export interface Checkpoint {
  checkpoint_id: string;
  step: number;
  name: string;
  files: { path: string; content_hash: string; size_bytes: number }[] | string;
  size_bytes: number;
  metrics: Record<string, number> | string;
  discarded: boolean;
  discarded_reason: string;
  created_at: string;
}

/** The metric names recorded with any of the checkpoints, sorted. */
export function checkpointMetrics(metrics: Record<string, number>[]): string[] {
  const keys = new Set<string>();
  for (const m of metrics) for (const k of Object.keys(m)) keys.add(k);
  return [...keys].sort();
}

export const SYSTEM_GROUP = "system";

/** The sections of system metrics (by the sampler's key prefixes), in display order. */
export const SYSTEM_SECTIONS: [string, RegExp][] = [
  ["CPU", /^cpu\./],
  ["Memory", /^memory\./],
  ["Disk and network", /^(disk|network)\./],
  ["GPU", /^gpu\./],
];

/** System metric keys by section (empty sections left out; others last). */
export function systemSections(keys: string[]): [string, string[]][] {
  const sorted = [...new Set(keys)].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const out: [string, string[]][] = [];
  const placed = new Set<string>();
  for (const [name, match] of SYSTEM_SECTIONS) {
    const mine = sorted.filter((k) => match.test(k));
    mine.forEach((k) => placed.add(k));
    if (mine.length) out.push([name, mine]);
  }
  const rest = sorted.filter((k) => !placed.has(k));
  if (rest.length) out.push(["Other", rest]);
  return out;
}

/** Keys for the training charts: those logged in some group other than "system". */
export function trainingKeys(names: { key: string; group: string }[]): string[] {
  return [...new Set(names.filter((m) => m.group !== SYSTEM_GROUP).map((m) => m.key))];
}

/** Keys of the "system" group. */
export function systemKeys(names: { key: string; group: string }[]): string[] {
  return [...new Set(names.filter((m) => m.group === SYSTEM_GROUP).map((m) => m.key))];
}
