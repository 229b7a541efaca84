// Series for charts, fetched together: the charts that scroll into view in the same
// moment ask for their metrics in one request (`/api/v1/series`: every chosen run x every
// asked key, each group of a key its own series, downsampled to the chart's width), so a
// page of charts is one round trip instead of one per chart.
import { arrow } from "./api";

export interface SeriesRows {
  /** one entry per (run, group) series of the key, in run order then group order */
  series: { run: string; group: string; step: Float64Array; value: Float64Array; at: Float64Array }[];
}

interface Want {
  key: string;
  resolve: (rows: SeriesRows) => void;
  reject: (e: Error) => void;
  signal: AbortSignal;
}

interface Batch {
  runs: string[];
  maxPoints: number;
  window: [number, number] | null;
  asOf: string;
  /** only these groups of each key ([]: every group) */
  groups: string[];
  wants: Want[];
}

const MAX_KEYS = 24; // keys per request (x runs: within the server's bound on series)
const pending = new Map<string, Batch>();
let scheduled = false;

/** The series of `key` for `runs` (each group its own), batched with other charts' asks. */
export function seriesOf(
  runs: string[],
  key: string,
  maxPoints: number,
  window: [number, number] | null,
  asOf: string,
  signal: AbortSignal,
  groups: string[] = [],
): Promise<SeriesRows> {
  const id = JSON.stringify([runs, maxPoints, window, asOf, groups]);
  let batch = pending.get(id);
  if (!batch) pending.set(id, (batch = { runs, maxPoints, window, asOf, groups, wants: [] }));
  const b = batch;
  const done = new Promise<SeriesRows>((resolve, reject) => b.wants.push({ key, resolve, reject, signal }));
  if (!scheduled) {
    scheduled = true;
    setTimeout(flush, 0);
  }
  return done;
}

function flush(): void {
  scheduled = false;
  const batches = [...pending.values()];
  pending.clear();
  for (const b of batches) {
    const wants = b.wants.filter((w) => !w.signal.aborted);
    for (let i = 0; i < wants.length; i += MAX_KEYS) send(b, wants.slice(i, i + MAX_KEYS));
  }
}

function send(b: Batch, wants: Want[]): void {
  const keys = [...new Set(wants.map((w) => w.key))];
  const abort = new AbortController();
  // the request goes away only when every chart that asked went away
  let left = wants.length;
  for (const w of wants) {
    w.signal.addEventListener("abort", () => {
      left -= 1;
      if (left === 0) abort.abort();
    });
  }
  arrow(
    "/series",
    {
      iteration_id: b.runs,
      key: keys,
      max_points: b.maxPoints,
      min_step: b.window ? Math.floor(b.window[0]) : undefined,
      max_step: b.window ? Math.ceil(b.window[1]) : undefined,
      as_of: b.asOf || undefined,
      group: b.groups.length ? b.groups : undefined,
    },
    abort.signal,
  ).then(
    ({ numRows, columns }) => {
      const split = splitRows(numRows, columns, b.runs);
      for (const w of wants) if (!w.signal.aborted) w.resolve(split.get(w.key) ?? { series: [] });
    },
    (e: Error) => {
      for (const w of wants) if (!w.signal.aborted) w.reject(e);
    },
  );
}

/** Rows of (iteration_id, key, group, step, value, recorded_at) by key, then series. */
export function splitRows(numRows: number, columns: Record<string, ArrayLike<unknown>>, runs: string[]): Map<string, SeriesRows> {
  const ids = columns.iteration_id as ArrayLike<string>;
  const keys = columns.key as ArrayLike<string>;
  const groups = columns.group as ArrayLike<string>;
  const steps = columns.step as ArrayLike<number>;
  const values = columns.value as ArrayLike<number>;
  const ats = columns.recorded_at as ArrayLike<number>;
  // rows come series by series: find each series' contiguous run of rows
  const spans = new Map<string, { run: string; group: string; start: number; end: number }[]>();
  let start = 0;
  for (let i = 1; i <= numRows; i++) {
    if (i < numRows && ids[i] === ids[start] && keys[i] === keys[start] && groups[i] === groups[start]) continue;
    let list = spans.get(keys[start]);
    if (!list) spans.set(keys[start], (list = []));
    list.push({ run: ids[start], group: groups[start] ?? "", start, end: i });
    start = i;
  }
  const order = new Map(runs.map((r, i) => [r, i]));
  const out = new Map<string, SeriesRows>();
  for (const [key, list] of spans) {
    list.sort((a, b) => (order.get(a.run) ?? 0) - (order.get(b.run) ?? 0) || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    out.set(key, {
      series: list.map((s) => ({
        run: s.run,
        group: s.group,
        step: Float64Array.from({ length: s.end - s.start }, (_, j) => steps[s.start + j]),
        value: Float64Array.from({ length: s.end - s.start }, (_, j) => values[s.start + j]),
        at: Float64Array.from({ length: s.end - s.start }, (_, j) => ats[s.start + j]),
      })),
    });
  }
  return out;
}
