// The runs table's model, apart from its rendering (unit-tested in table.test.ts).

export type Kind = "base" | "param" | "metric" | "tag";

export interface Column {
  name: string; // the API's column name (params.lr, metrics.loss.min) or a base column
  label: string;
  kind: Kind;
  numeric: boolean;
  width: number;
}

export const BASE_COLUMNS: Column[] = [
  { name: "name", label: "name", kind: "base", numeric: false, width: 240 },
  { name: "status", label: "status", kind: "base", numeric: false, width: 118 },
  { name: "duration_s", label: "duration", kind: "base", numeric: true, width: 100 },
  { name: "created_at", label: "started", kind: "base", numeric: true, width: 150 },
  { name: "created_by", label: "user", kind: "base", numeric: false, width: 90 },
  { name: "tags", label: "tags", kind: "base", numeric: false, width: 160 },
];

export const SUMMARIES = ["last", "min", "max"] as const;

export interface CatalogEntry {
  kind: "param" | "metric" | "tag";
  key: string;
  group?: string; // of a metric: "" is the default group, e.g. "val" another
  iterations: number;
}

/** The API's name of a metric summary column (`metrics@val.loss.min` for a group). */
export function metricColumn(key: string, group: string, summary: string): string {
  return `${group ? `metrics@${group}` : "metrics"}.${key}.${summary}`;
}

/** The table's columns: the base ones (tags in one), params, then each metric's
 * summaries with a metric's groups side by side (loss, loss · val). */
export function columnsOf(catalog: CatalogEntry[]): Column[] {
  const out = [...BASE_COLUMNS];
  for (const c of catalog) {
    if (c.kind === "param") {
      out.push({ name: `params.${c.key}`, label: c.key, kind: "param", numeric: false, width: 110 });
    }
  }
  const metrics = catalog
    .filter((c) => c.kind === "metric")
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : (a.group ?? "") < (b.group ?? "") ? -1 : (a.group ?? "") > (b.group ?? "") ? 1 : 0));
  for (const c of metrics) {
    const group = c.group ?? "";
    for (const s of SUMMARIES) {
      out.push({
        name: metricColumn(c.key, group, s),
        label: group ? `${c.key} · ${group} (${s})` : `${c.key} (${s})`,
        kind: "metric",
        numeric: true,
        width: 110,
      });
    }
  }
  return out;
}

export type Cell = string | number | null | undefined;

/** Compare two cells: numbers numerically, text naturally; null/undefined/NaN last. */
export function compareCells(a: Cell, b: Cell, numeric: boolean): number {
  const missingA = a === null || a === undefined || a === "" || (typeof a === "number" && Number.isNaN(a));
  const missingB = b === null || b === undefined || b === "" || (typeof b === "number" && Number.isNaN(b));
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
  if (numeric || (typeof a === "number" && typeof b === "number")) return Number(a) - Number(b);
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

export interface Sort {
  column: string;
  desc: boolean;
}

export function parseSort(text: string | null): Sort | null {
  if (!text) return null;
  const desc = text.endsWith(":desc");
  const column = text.replace(/:(asc|desc)$/, "");
  return column ? { column, desc } : null;
}

export function formatSort(sort: Sort | null): string {
  return sort ? `${sort.column}:${sort.desc ? "desc" : "asc"}` : "";
}

/** Row order: indices of `n` rows sorted by `values` (stable; missing values last). */
export function sortedOrder(
  n: number,
  values: ((i: number) => Cell) | null,
  numeric: boolean,
  desc: boolean,
): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (!values) return order;
  const keys = order.map(values);
  order.sort((a, b) => {
    const ka = keys[a];
    const kb = keys[b];
    const missingA = ka === null || ka === undefined || ka === "" || (typeof ka === "number" && Number.isNaN(ka));
    const missingB = kb === null || kb === undefined || kb === "" || (typeof kb === "number" && Number.isNaN(kb));
    if (missingA || missingB) return missingA === missingB ? a - b : missingA ? 1 : -1;
    const c = compareCells(ka, kb, numeric);
    return (desc ? -c : c) || a - b;
  });
  return order;
}

export type Line = { type: "group"; value: string; count: number; collapsed: boolean } | { type: "row"; row: number };

/** The table's lines: rows in `order`, or under a header per value of `groupOf`. */
export function lines(
  order: number[],
  groupOf: ((i: number) => Cell) | null,
  collapsed: Set<string>,
): Line[] {
  if (!groupOf) return order.map((row) => ({ type: "row", row }));
  const groups = new Map<string, number[]>();
  for (const row of order) {
    const g = groupOf(row);
    const key = g === null || g === undefined ? "(none)" : String(g);
    let rows = groups.get(key);
    if (!rows) groups.set(key, (rows = []));
    rows.push(row);
  }
  const keys = [...groups.keys()].sort((a, b) => compareCells(a, b, false));
  const out: Line[] = [];
  for (const value of keys) {
    const rows = groups.get(value)!;
    const isCollapsed = collapsed.has(value);
    out.push({ type: "group", value, count: rows.length, collapsed: isCollapsed });
    if (!isCollapsed) for (const row of rows) out.push({ type: "row", row });
  }
  return out;
}

/** Which of `columns` (after the pinned ones) intersect the viewport [left, left+width). */
export function visibleColumns(
  columns: Column[],
  pinnedWidth: number,
  left: number,
  width: number,
  overscan = 2,
): { first: number; last: number; offset: number } {
  let x = pinnedWidth;
  let first = -1;
  let last = -1;
  let offset = pinnedWidth;
  const lo = left + pinnedWidth;
  const hi = left + width;
  for (let i = 0; i < columns.length; i++) {
    const w = columns[i].width;
    if (x + w > lo && x < hi) {
      if (first < 0) {
        first = i;
        offset = x;
      }
      last = i;
    }
    x += w;
  }
  if (first < 0) return { first: 0, last: -1, offset: pinnedWidth };
  const f = Math.max(0, first - overscan);
  for (let i = f; i < first; i++) offset -= columns[i].width;
  return { first: f, last: Math.min(columns.length - 1, last + overscan), offset };
}
