// The runs table of an experiment: rows and columns virtualised (10,000 x 1,000 stay
// smooth), columns fetched in blocks as they scroll into view (Arrow IPC), sort by any
// column, the API's filter language (errors inline), choose/pin columns, group by a
// param, select rows to compare or chart, running rows refreshed live.
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, arrow, items, jsonValue } from "../api";
import { ErrorBox, Status } from "../common";
import { fmtDuration, fmtNumber, fmtTime } from "../format";
import { Link, navigate, setQuery } from "../nav";
import { withAsOf } from "../asof";
import { href, listParam } from "../route";
import {
  type CatalogEntry,
  type Cell,
  type Column,
  columnsOf,
  formatSort,
  lines,
  parseSort,
  sortedOrder,
  visibleColumns,
} from "../table";

const ROW = 28;
const HEAD = 34;
const BLOCK = 40; // columns per request
const CHECK = 34; // the selection column

interface Base {
  n: number;
  ids: string[];
  cols: Record<string, ArrayLike<unknown>>;
}

/** A block's column: its values and the rows (iteration ids) they belong to. */
interface Fetched {
  ids: ArrayLike<string>;
  values: ArrayLike<unknown>;
}

/** Row numbers of `base` into a block's rows (null: the same rows in the same order). */
function alignment(base: Base, ids: ArrayLike<string>): Int32Array | null {
  let same = ids.length === base.n;
  for (let i = 0; same && i < base.n; i++) same = ids[i] === base.ids[i];
  if (same) return null;
  const at = new Map<string, number>();
  for (let i = 0; i < ids.length; i++) at.set(ids[i], i);
  return Int32Array.from(base.ids, (id) => at.get(id) ?? -1);
}

/**
 * Blocks of columns, fetched as they come into view (BLOCK per request, Arrow). Each
 * block keeps the rows it was answered for, so it can be asked for before the table's
 * rows arrive and stays right when rows appear (a new run) until it is fetched again.
 */
function useBlocks(experimentId: string, filter: string, asOf: string) {
  const [data, setData] = useState<Map<string, Fetched>>(new Map());
  const pending = useRef(new Set<string>());
  useEffect(() => {
    setData(new Map());
    pending.current = new Set();
  }, [experimentId, filter, asOf]);
  const want = useCallback(
    (names: string[], refresh = false) => {
      const missing = names.filter((n) => (refresh || !data.has(n)) && !pending.current.has(n));
      const asked = pending.current;
      for (let i = 0; i < missing.length; i += BLOCK) {
        const block = missing.slice(i, i + BLOCK);
        block.forEach((n) => asked.add(n));
        arrow(`/experiments/${experimentId}/runs-table`, { columns: block, filter, base: false, as_of: asOf || undefined }).then(
          ({ columns }) => {
            block.forEach((n) => asked.delete(n));
            if (asked !== pending.current) return; // asked for another table meanwhile
            const ids = columns.iteration_id as ArrayLike<string>;
            setData((d) => {
              const next = new Map(d);
              for (const n of block) next.set(n, { ids, values: columns[n] });
              return next;
            });
          },
          () => block.forEach((n) => asked.delete(n)),
        );
      }
    },
    [data, experimentId, filter, asOf],
  );
  return { data, want };
}

export function RunsTable({ experimentId, query, asOf }: { experimentId: string; query: URLSearchParams; asOf: string }) {
  const filter = query.get("filter") ?? "";
  const sort = parseSort(query.get("sort"));
  const hidden = useMemo(() => new Set(listParam(query.get("hide"))), [query.get("hide")]);
  const pinned = useMemo(() => listParam(query.get("pin")), [query.get("pin")]);
  const group = query.get("group") ?? "";
  const selected = useMemo(() => new Set(listParam(query.get("sel"))), [query.get("sel")]);

  const [catalog, setCatalog] = useState<CatalogEntry[] | null>(null);
  const [base, setBase] = useState<Base | null>(null);
  const [error, setError] = useState<Error | undefined>();
  const [filterError, setFilterError] = useState<string | null>(null);
  const [draft, setDraft] = useState(filter);
  const [chooser, setChooser] = useState(false);
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const [cursor, setCursor] = useState(0);
  const [scroll, setScroll] = useState({ top: 0, left: 0, width: innerWidth, height: innerHeight });
  const grid = useRef<HTMLDivElement>(null);

  useEffect(() => setDraft(filter), [filter]);

  useEffect(() => {
    items<CatalogEntry>(`/experiments/${experimentId}/columns`, { as_of: asOf || undefined }).then(setCatalog, setError);
  }, [experimentId, asOf]);

  const loadBase = useCallback(
    (signal?: AbortSignal) =>
      arrow(`/experiments/${experimentId}/runs-table`, { filter, as_of: asOf || undefined }, signal).then(
        ({ numRows, columns }) => {
          setFilterError(null);
          setBase((old) => {
            const ids = Array.from(columns.iteration_id as ArrayLike<string>);
            const same = old && old.ids.length === ids.length && old.ids.every((x, i) => x === ids[i]);
            return { n: numRows, ids: same ? old.ids : ids, cols: columns };
          });
        },
        (e: Error) => {
          if (e.name === "AbortError") return;
          if (e instanceof ApiError && e.status === 400) setFilterError(e.message);
          else setError(e);
        },
      ),
    [experimentId, filter, asOf],
  );

  useEffect(() => {
    const abort = new AbortController();
    loadBase(abort.signal);
    return () => abort.abort();
  }, [loadBase]);

  const allColumns = useMemo(() => (catalog ? columnsOf(catalog) : []), [catalog]);
  const shown = useMemo(() => allColumns.filter((c) => !hidden.has(c.name) || c.name === "name"), [allColumns, hidden]);
  const pinnedCols = useMemo(() => {
    const names = ["name", ...pinned.filter((p) => p !== "name")];
    return names.map((n) => shown.find((c) => c.name === n)).filter((c): c is Column => !!c);
  }, [shown, pinned]);
  const scrolling = useMemo(() => shown.filter((c) => !pinnedCols.includes(c)), [shown, pinnedCols]);
  const pinnedWidth = CHECK + pinnedCols.reduce((w, c) => w + c.width, 0);
  const totalWidth = pinnedWidth + scrolling.reduce((w, c) => w + c.width, 0);

  const { data, want } = useBlocks(experimentId, filter, asOf);
  const aligned = useMemo(() => new WeakMap<ArrayLike<string>, Int32Array | null>(), [base]);

  const cellOf = useCallback(
    (column: Column, row: number): Cell => {
      if (!base) return undefined;
      if (column.kind === "base") return base.cols[column.name]?.[row] as Cell;
      const block = data.get(column.name);
      if (!block) return undefined;
      let at = aligned.get(block.ids);
      if (at === undefined) aligned.set(block.ids, (at = alignment(base, block.ids)));
      const i = at === null ? row : at[row];
      return i < 0 ? null : (block.values[i] as Cell);
    },
    [base, data, aligned],
  );

  const sortColumn = sort ? allColumns.find((c) => c.name === sort.column) : undefined;
  const groupColumn = group ? allColumns.find((c) => c.name === group) : undefined;
  useEffect(() => {
    const need = [sortColumn, groupColumn].filter((c): c is Column => !!c && c.kind !== "base").map((c) => c.name);
    if (need.length) want(need);
  }, [sortColumn, groupColumn, want]);

  const order = useMemo(() => {
    if (!base) return [];
    const values = sortColumn && (sortColumn.kind === "base" || data.has(sortColumn.name)) ? (i: number) => cellOf(sortColumn, i) : null;
    return sortedOrder(base.n, values, sortColumn?.numeric ?? false, sort?.desc ?? false);
  }, [base, sortColumn, sort?.desc, data, cellOf]);

  const table = useMemo(() => {
    const groupOf = groupColumn && (groupColumn.kind === "base" || data.has(groupColumn.name)) ? (i: number) => cellOf(groupColumn, i) : null;
    return lines(order, groupOf, collapsed);
  }, [order, groupColumn, data, collapsed, cellOf]);

  // rows and columns in view
  const firstLine = Math.max(0, Math.floor(scroll.top / ROW) - 5);
  const lastLine = Math.min(table.length - 1, Math.ceil((scroll.top + scroll.height) / ROW) + 5);
  const view = visibleColumns(scrolling, pinnedWidth, scroll.left, scroll.width);
  const inView = scrolling.slice(view.first, view.last + 1);

  // asked for as soon as the columns are known (a layout effect: not a frame later)
  useLayoutEffect(() => {
    want([...pinnedCols, ...inView].filter((c) => c.kind !== "base").map((c) => c.name));
  }, [inView.map((c) => c.name).join("\n"), pinnedCols, want]);

  // live: running rows refresh every 2 s (statuses, durations, the metrics in view)
  const running = useMemo(() => {
    const st = base?.cols.status as ArrayLike<string> | undefined;
    if (!st || asOf) return false; // the past does not change
    for (let i = 0; i < st.length; i++) if (st[i] === "RUNNING") return true;
    return false;
  }, [base]);
  useEffect(() => {
    if (!running) return;
    const id = setInterval(() => {
      loadBase();
      want([...pinnedCols, ...inView].filter((c) => c.kind !== "base").map((c) => c.name), true);
    }, 2000);
    return () => clearInterval(id);
  }, [running, loadBase, want, inView.length, pinnedCols]);

  // ready: the rows in view show their values (a mark for the benchmark, once)
  const ready = useRef(false);
  useEffect(() => {
    if (ready.current || !base || !catalog) return;
    if (base.n > 0 && inView.some((c) => c.kind !== "base" && !data.has(c.name))) return;
    ready.current = true;
    performance.mark("runs-table-ready");
  });

  useEffect(() => {
    const el = grid.current;
    if (!el) return;
    const measure = () => setScroll({ top: el.scrollTop, left: el.scrollLeft, width: el.clientWidth, height: el.clientHeight });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [base !== null && catalog !== null]);

  const frame = useRef(0);
  const onScroll = () => {
    cancelAnimationFrame(frame.current);
    frame.current = requestAnimationFrame(() => {
      const el = grid.current!;
      setScroll({ top: el.scrollTop, left: el.scrollLeft, width: el.clientWidth, height: el.clientHeight });
    });
  };

  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setQuery({ sel: [...next] });
  };

  const sortBy = (c: Column) => {
    const next = sort?.column === c.name ? (sort.desc ? null : { column: c.name, desc: true }) : { column: c.name, desc: false };
    setQuery({ sort: formatSort(next) });
  };

  const onKey = (e: KeyboardEvent) => {
    if (!base || table.length === 0) return;
    let next = cursor;
    if (e.key === "ArrowDown" || e.key === "j") next = Math.min(table.length - 1, cursor + 1);
    else if (e.key === "ArrowUp" || e.key === "k") next = Math.max(0, cursor - 1);
    else if (e.key === "PageDown") next = Math.min(table.length - 1, cursor + Math.floor(scroll.height / ROW));
    else if (e.key === "PageUp") next = Math.max(0, cursor - Math.floor(scroll.height / ROW));
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = table.length - 1;
    else if (e.key === " " || e.key === "x") {
      const line = table[cursor];
      if (line?.type === "row") toggle(base.ids[line.row]);
      e.preventDefault();
      return;
    } else if (e.key === "Enter") {
      const line = table[cursor];
      if (line?.type === "row") navigate(withAsOf(`/r/${base.ids[line.row]}`, asOf));
      else if (line?.type === "group") toggleGroup(line.value);
      return;
    } else return;
    e.preventDefault();
    setCursor(next);
    const el = grid.current!;
    const y = next * ROW;
    if (y < el.scrollTop) el.scrollTop = y;
    else if (y + ROW > el.scrollTop + el.clientHeight - HEAD) el.scrollTop = y + ROW - el.clientHeight + HEAD;
  };

  const toggleGroup = (value: string) => {
    const next = new Set(collapsed);
    if (next.has(value)) next.delete(value);
    else next.add(value);
    setCollapsed(next);
  };

  const render = (c: Column, row: number) => {
    const v = cellOf(c, row);
    if (c.name === "name") {
      const id = base!.ids[row];
      return <Link href={withAsOf(`/r/${id}`, asOf)}>{(v as string) || id.slice(0, 8)}</Link>;
    }
    if (c.name === "status") return v ? <Status status={String(v)} /> : null;
    if (c.name === "duration_s") return fmtDuration(v as number);
    if (c.name === "created_at") return fmtTime(v as number);
    if (c.name === "tags") {
      const tags = jsonValue<Record<string, string>>(v as string, {});
      return Object.entries(tags).map(([k, t]) => (t ? `${k}=${t}` : k)).join(", ");
    }
    if (v === undefined) return data.has(c.name) || c.kind === "base" ? "" : <span class="muted pending">…</span>;
    if (c.kind === "metric") return fmtNumber(v as number);
    return v === null ? "" : String(v);
  };

  const cell = (c: Column, row: number) => {
    const content = render(c, row);
    return (
      <div class={`cell ${c.numeric ? "num" : ""}`} style={{ width: `${c.width}px` }} role="gridcell" title={typeof content === "string" ? content : undefined}>
        {content}
      </div>
    );
  };

  const headerCell = (c: Column) => (
    <div class={`cell head ${c.numeric ? "num" : ""}`} style={{ width: `${c.width}px` }} role="columnheader" aria-sort={sort?.column === c.name ? (sort.desc ? "descending" : "ascending") : "none"}>
      <button type="button" class="head-button" onClick={() => sortBy(c)} title={`sort by ${c.name}`}>
        {c.kind === "param" && <span class="kind">p</span>}
        {c.label}
        {sort?.column === c.name && (sort.desc ? " ▼" : " ▲")}
      </button>
    </div>
  );

  const submitFilter = (e: Event) => {
    e.preventDefault();
    setQuery({ filter: draft });
  };

  const selectedIds = [...selected];
  const paramColumns = allColumns.filter((c) => c.kind === "param");

  return (
    <section class="runs">
      <ErrorBox error={error} />
      <form class="toolbar" onSubmit={submitFilter} role="search">
        <input
          type="search"
          class="filter"
          aria-label="filter"
          placeholder="filter, e.g. params.lr = '0.01' and metrics.loss < 0.5"
          value={draft}
          onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
        />
        <button type="submit">Filter</button>
        <label>
          group by{" "}
          <select value={group} onChange={(e) => setQuery({ group: (e.target as HTMLSelectElement).value })} aria-label="group by">
            <option value="">—</option>
            <option value="status">status</option>
            {paramColumns.map((c) => (
              <option key={c.name} value={c.name}>
                {c.label}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={() => setChooser(!chooser)} aria-expanded={chooser}>
          Columns
        </button>
        <span class="spacer" />
        <span class="muted count">{base ? `${base.n} runs` : ""}{selectedIds.length ? `, ${selectedIds.length} selected` : ""}</span>
        <Link class={`button ${selectedIds.length < 1 ? "disabled" : ""}`} href={href(`/e/${experimentId}/charts`, { runs: selectedIds, as_of: asOf })}>
          Chart
        </Link>
        <Link class={`button ${selectedIds.length < 2 ? "disabled" : ""}`} href={href(`/e/${experimentId}/compare`, { runs: selectedIds, as_of: asOf })}>
          Compare
        </Link>
      </form>
      {filterError && (
        <div class="error filter-error" role="alert">
          {filterError}
        </div>
      )}
      {chooser && <ColumnChooser columns={allColumns} hidden={hidden} pinned={pinned} />}
      {base && catalog && (
        <div
          ref={grid}
          class="grid"
          tabIndex={0}
          role="grid"
          aria-label="runs"
          aria-rowcount={base.n}
          aria-colcount={shown.length}
          onScroll={onScroll}
          onKeyDown={onKey}
        >
          <div class="grid-inner" style={{ width: `${totalWidth}px`, height: `${HEAD + table.length * ROW}px` }}>
            <div class="grid-row grid-head" style={{ width: `${totalWidth}px`, height: `${HEAD}px` }} role="row">
              <div class="pinned" style={{ width: `${pinnedWidth}px` }}>
                <div class="cell check head" style={{ width: `${CHECK}px` }} />
                {pinnedCols.map(headerCell)}
              </div>
              <div style={{ width: `${view.offset - pinnedWidth}px`, flex: "none" }} />
              {inView.map(headerCell)}
            </div>
            {table.slice(firstLine, lastLine + 1).map((line, j) => {
              const i = firstLine + j;
              const top = HEAD + i * ROW;
              if (line.type === "group") {
                return (
                  <div key={`g:${line.value}`} class={`grid-row group ${i === cursor ? "cursor" : ""}`} style={{ top: `${top}px`, width: `${totalWidth}px` }} role="row">
                    <div class="pinned group-label" style={{ width: `${Math.min(totalWidth, scroll.width)}px` }}>
                      <button type="button" class="link" onClick={() => toggleGroup(line.value)} aria-expanded={!line.collapsed}>
                        {line.collapsed ? "▶" : "▼"} {groupColumn?.label} = {line.value}
                      </button>{" "}
                      <span class="muted">({line.count} runs)</span>
                    </div>
                  </div>
                );
              }
              const id = base.ids[line.row];
              const isSelected = selected.has(id);
              return (
                <div
                  key={id}
                  class={`grid-row ${i === cursor ? "cursor" : ""} ${isSelected ? "selected" : ""}`}
                  style={{ top: `${top}px`, width: `${totalWidth}px` }}
                  role="row"
                  aria-selected={isSelected}
                  data-run={id}
                  onClick={() => setCursor(i)}
                >
                  <div class="pinned" style={{ width: `${pinnedWidth}px` }}>
                    <div class="cell check" style={{ width: `${CHECK}px` }}>
                      <input type="checkbox" checked={isSelected} onChange={() => toggle(id)} aria-label={`select ${String((base.cols.name as ArrayLike<string>)[line.row] || id)}`} tabIndex={-1} />
                    </div>
                    {pinnedCols.map((c) => cell(c, line.row))}
                  </div>
                  <div style={{ width: `${view.offset - pinnedWidth}px`, flex: "none" }} />
                  {inView.map((c) => cell(c, line.row))}
                </div>
              );
            })}
          </div>
        </div>
      )}
      {base && base.n === 0 && <p class="muted">No runs{filter ? " match this filter" : " yet"}.</p>}
    </section>
  );
}

const CHOOSER_SHOWN = 300;

/** Columns to show, hide and pin: a search narrows them (name or label, every word);
 * "show all"/"hide all" act on every match, also beyond the first CHOOSER_SHOWN listed. */
function ColumnChooser({ columns, hidden, pinned }: { columns: Column[]; hidden: Set<string>; pinned: string[] }) {
  const [search, setSearch] = useState("");
  const [kind, setKind] = useState<"" | "param" | "metric" | "base">("");
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const matching = columns.filter(
    (c) =>
      c.name !== "name" &&
      (!kind || c.kind === kind) &&
      words.every((w) => c.name.toLowerCase().includes(w) || c.label.toLowerCase().includes(w)),
  );
  const listed = matching.slice(0, CHOOSER_SHOWN);
  const setHidden = (names: string[], hide: boolean) => {
    const next = new Set(hidden);
    for (const n of names) hide ? next.add(n) : next.delete(n);
    setQuery({ hide: [...next] });
  };
  return (
    <div class="chooser" role="dialog" aria-label="columns">
      <div class="toolbar">
        <input type="search" placeholder="find columns (every word)" aria-label="find a column" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} />
        <select aria-label="column kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value as typeof kind)}>
          <option value="">all kinds</option>
          <option value="param">params</option>
          <option value="metric">metrics</option>
          <option value="base">run</option>
        </select>
        <button type="button" onClick={() => setHidden(matching.map((c) => c.name), false)}>
          show all {matching.length}
        </button>
        <button type="button" onClick={() => setHidden(matching.map((c) => c.name), true)}>
          hide all {matching.length}
        </button>
        <span class="muted" role="status">
          {matching.length > listed.length ? `${listed.length} of ${matching.length} matches listed: type to narrow` : `${matching.length} matches`}
        </span>
      </div>
      <ul class="chooser-list">
        {listed.map((c) => (
          <li key={c.name}>
            <label>
              <input type="checkbox" checked={!hidden.has(c.name)} onChange={() => setHidden([c.name], !hidden.has(c.name))} /> {c.label}
            </label>
            <button
              type="button"
              class={`small ${pinned.includes(c.name) ? "active" : ""}`}
              aria-pressed={pinned.includes(c.name)}
              aria-label={`pin ${c.label}`}
              onClick={() => setQuery({ pin: pinned.includes(c.name) ? pinned.filter((p) => p !== c.name) : [...pinned, c.name] })}
            >
              pin
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
