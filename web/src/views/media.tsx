// A run's media: per key, a step slider and what was logged at that step -- images with
// their captions (and a strip of thumbnails to jump by), figures (Plotly / Vega-Lite,
// drawn by their libraries, loaded only when a figure is shown), text samples and small
// tables; histograms per step (uPlot bars) with an overview across steps. The step shown
// is in the URL (?step=, set by any slider): every key shows its step at or before it,
// so a link shares what was looked at, and keys are compared at the same step.
import uPlot from "uplot";
import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { bytes, get, items, jsonValue, type PageOf } from "../api";
import { ErrorBox, Loading } from "../common";
import { fmtBytes, fmtNumber } from "../format";
import { useLoad } from "../hooks";
import { setQuery } from "../nav";
import { around, bars, byKey, type Histogram, type MediaItem, type MediaKey, overview, stepIndex, stepParam } from "../media";

const PAGE = 10_000; // the API's largest page: media items listed at once
const THUMBS = 24;
const KEY_STEPS = 500; // of each key's media and histograms, spread from its first step to its last

const THUMB_MAX_BYTES = 256 * 1024; // larger images get a step button, not their bytes
const KEPT_URLS = 300;

/** Bytes an iteration's media names, as an object URL or as text; with the sign-in token,
 * so it works under --auth too. Object URLs are content-addressed, so the latest
 * KEPT_URLS are kept for going back and forth (the oldest revoked: an image already
 * shown stays shown). */
const urls = new Map<string, Promise<string>>();
function contentPath(iterationId: string, hash: string): string {
  return `/iterations/${iterationId}/content?hash=${hash}`;
}
export function contentUrl(iterationId: string, hash: string): Promise<string> {
  const id = `${iterationId}/${hash}`;
  let u = urls.get(id);
  if (u) {
    urls.delete(id); // most recent last
  } else {
    u = bytes(contentPath(iterationId, hash)).then(async (r) => URL.createObjectURL(await r.blob()));
    u.catch(() => urls.delete(id));
  }
  urls.set(id, u);
  for (const [old, url] of urls) {
    if (urls.size <= KEPT_URLS) break;
    urls.delete(old);
    url.then(URL.revokeObjectURL, () => {});
  }
  return u;
}
async function contentText(iterationId: string, hash: string, signal: AbortSignal): Promise<string> {
  return (await bytes(contentPath(iterationId, hash), signal)).text();
}

export function RunMedia({ iterationId, query, asOf }: { iterationId: string; query: URLSearchParams; asOf: string }) {
  const then = { as_of: asOf || undefined };
  const media = useLoad((signal) => get<PageOf<MediaItem>>(`/iterations/${iterationId}/media`, { limit: PAGE, max_steps: KEY_STEPS, ...then }, signal), [iterationId, asOf]);
  const histograms = useLoad((signal) => items<Histogram>(`/iterations/${iterationId}/histograms`, { limit: PAGE, max_steps: KEY_STEPS, ...then }, signal), [iterationId, asOf]);
  const keys = useMemo(() => byKey(media.data?.items ?? []), [media.data]);
  const hists = useMemo(() => {
    const out = new Map<string, Histogram[]>();
    for (const h of histograms.data ?? []) {
      let list = out.get(h.key);
      if (!list) out.set(h.key, (list = []));
      list.push(h);
    }
    return out;
  }, [histograms.data]);
  const only = query.get("key") ?? "";
  const want = stepParam(query.get("step"));
  const ready = !!media.data && !!histograms.data;
  const names = [...keys.map((k) => k.key), ...hists.keys()];
  return (
    <section class="media">
      <ErrorBox error={media.error ?? histograms.error} />
      <Loading when={(media.loading && !media.data) || (histograms.loading && !histograms.data)} />
      {names.length > 1 && (
        <div class="toolbar">
          <label>
            show{" "}
            <select aria-label="media key" value={only} onChange={(e) => setQuery({ key: (e.target as HTMLSelectElement).value || null })}>
              <option value="">every key</option>
              {names.map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
        </div>
      )}
      {media.data && media.data.total > media.data.items.length && (
        <p class="muted">
          The first {media.data.items.length} of {media.data.total} media items are shown.
        </p>
      )}
      {histograms.data && histograms.data.length >= PAGE && (
        <p class="muted">
          The first {PAGE} histograms (by key, then step) are shown.
        </p>
      )}
      {media.data && histograms.data && names.length === 0 && <p class="muted">No media or histograms.</p>}
      {/* both lists first: the keys' places on the page do not move as they arrive */}
      {ready && keys
        .filter((k) => !only || k.key === only)
        .map((k) => (
          <MediaPanel key={k.key} iterationId={iterationId} media={k} want={want} />
        ))}
      {ready && [...hists.entries()]
        .filter(([key]) => !only || key === only)
        .map(([key, list]) => (
          <HistogramPanel key={`h:${key}`} name={key} histograms={list} want={want} />
        ))}
    </section>
  );
}

/** Says when a key's steps were sampled (`max_steps`): `shown` of its `of`. */
function Sampled({ shown, of }: { shown: number; of: number }) {
  return of > shown ? <p class="muted small">{shown} of its {of} steps, spread evenly from the first to the last.</p> : null;
}

function StepSlider({ name, steps, at, onChange }: { name: string; steps: number[]; at: number; onChange: (i: number) => void }) {
  return (
    <div class="toolbar step-slider">
      <label>
        step{" "}
        <input
          type="range"
          min={0}
          max={Math.max(0, steps.length - 1)}
          step={1}
          value={at}
          disabled={steps.length < 2}
          aria-label={`${name} step`}
          onInput={(e) => onChange(Number((e.target as HTMLInputElement).value))}
        />
      </label>{" "}
      <output class="step" aria-label={`${name} shown step`}>
        {steps[at]}
      </output>
      <span class="muted">
        {" "}
        ({at + 1} of {steps.length})
      </span>
    </div>
  );
}

/** Move every panel to `step` (each to its own nearest step at or before it), in the URL. */
function showStep(step: number): void {
  setQuery({ step: String(step) });
}

function MediaPanel({ iterationId, media, want }: { iterationId: string; media: MediaKey; want: number | null }) {
  const at = stepIndex(media.steps, want);
  const setAt = (i: number) => showStep(media.steps[i]);
  const step = media.steps[at];
  const shown = media.at.get(step) ?? [];
  return (
    <section class={`media-key media-${media.kind}`} data-key={media.key} aria-label={`media ${media.key}`}>
      <h2>
        {media.key} <span class="muted">{media.kind}</span>
      </h2>
      <StepSlider name={media.key} steps={media.steps} at={at} onChange={setAt} />
      <Sampled shown={media.steps.length} of={media.at.get(media.steps[0])?.[0]?.key_steps ?? 0} />
      <InView minHeight={media.kind === "text" ? 60 : 240}>
      <div class="media-items">
        {shown.map((m) => (
          <MediaView key={`${m.step}/${m.index}`} iterationId={iterationId} item={m} />
        ))}
      </div>
      {media.kind === "image" && media.steps.length > 1 && (
        <div class="thumbs" role="group" aria-label={`${media.key} thumbnails`}>
          {around(media.steps.length, at, THUMBS).map((i) => {
            const first = media.at.get(media.steps[i])?.[0];
            return (
              first && (
                <button type="button" key={i} class={i === at ? "thumb active" : "thumb"} aria-label={`step ${media.steps[i]}`} aria-current={i === at ? "true" : undefined} onClick={() => setAt(i)}>
                  {first.size_bytes <= THUMB_MAX_BYTES ? <BlobImage iterationId={iterationId} hash={first.content_hash} alt={`step ${media.steps[i]}`} /> : <span class="thumb-step">{media.steps[i]}</span>}
                </button>
              )
            );
          })}
        </div>
      )}
      </InView>
    </section>
  );
}

/** Its children only once it has come near the viewport: a run with many media keys
 * fetches and draws only what is scrolled to (like the charts). */
function InView({ minHeight, children }: { minHeight: number; children: ComponentChildren }) {
  const box = useRef<HTMLDivElement>(null);
  const [seen, setSeen] = useState(false);
  useEffect(() => {
    if (seen) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        setSeen(true);
        io.disconnect();
      }
    }, { rootMargin: "300px" });
    io.observe(box.current!);
    return () => io.disconnect();
  }, [seen]);
  return (
    <div ref={box} class="in-view" style={seen ? undefined : { minHeight: `${minHeight}px` }}>
      {seen && children}
    </div>
  );
}

function BlobImage({ iterationId, hash, alt }: { iterationId: string; hash: string; alt: string }) {
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<Error | undefined>();
  useEffect(() => {
    let live = true;
    setError(undefined);
    contentUrl(iterationId, hash).then(
      (u) => live && setSrc(u),
      (e: Error) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [iterationId, hash]);
  if (error) return <span class="error-inline">{error.message}</span>;
  return src ? <img src={src} alt={alt} data-hash={hash} /> : <span class="loading">…</span>;
}

function MediaView({ iterationId, item }: { iterationId: string; item: MediaItem }) {
  const caption = item.caption ? <figcaption>{item.caption}</figcaption> : null;
  if (item.kind === "image") {
    return (
      <figure class="media-image" data-step={item.step}>
        <div class="image-frame" style={imageFrame(item.width, item.height)}>
          <BlobImage iterationId={iterationId} hash={item.content_hash} alt={item.caption || `${item.key} at step ${item.step}`} />
        </div>
        {caption}
        <p class="muted small">
          {item.width}×{item.height} · {fmtBytes(item.size_bytes)}
        </p>
      </figure>
    );
  }
  if (item.kind === "figure") return <FigureView iterationId={iterationId} item={item} />;
  if (item.kind === "table") return <TableView iterationId={iterationId} item={item} />;
  return <TextView iterationId={iterationId} item={item} />;
}

/** An image's place, kept while its bytes load (no layout shift): its own size, at least
 * 192 px wide (small images scaled up, pixelated) and at most 512 px either way. */
function imageFrame(width: number, height: number): { width: string; height: string } {
  const w = width > 0 ? width : 256;
  const h = height > 0 ? height : w;
  const scale = Math.min(512 / w, 512 / h, Math.max(1, 192 / w));
  return { width: `${Math.round(w * scale)}px`, height: `${Math.round(h * scale)}px` };
}

function TextView({ iterationId, item }: { iterationId: string; item: MediaItem }) {
  const stored = !item.text && !!item.content_hash;
  const text = useLoad((signal) => (stored ? contentText(iterationId, item.content_hash, signal) : Promise.resolve(item.text)), [iterationId, item.content_hash, item.text]);
  return (
    <figure class="media-text" data-step={item.step}>
      <ErrorBox error={text.error} />
      <pre>{text.data ?? ""}</pre>
      {item.caption && <figcaption>{item.caption}</figcaption>}
    </figure>
  );
}

function TableView({ iterationId, item }: { iterationId: string; item: MediaItem }) {
  const table = useLoad(async (signal) => JSON.parse(await contentText(iterationId, item.content_hash, signal)) as { columns: string[]; rows: unknown[][] }, [iterationId, item.content_hash]);
  return (
    <figure class="media-table" data-step={item.step}>
      <ErrorBox error={table.error} />
      {table.data && (
        <div class="scroll-x">
          <table class="list">
            <thead>
              <tr>
                {table.data.columns.map((c) => (
                  <th key={c}>{c}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {table.data.rows.slice(0, 1000).map((r, i) => (
                <tr key={i}>
                  {r.map((v, j) => (
                    <td key={j} class={typeof v === "number" ? "num" : undefined}>
                      {typeof v === "number" ? fmtNumber(v) : typeof v === "string" ? v : JSON.stringify(v)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {item.caption && <figcaption>{item.caption}</figcaption>}
    </figure>
  );
}

function FigureView({ iterationId, item }: { iterationId: string; item: MediaItem }) {
  const box = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [spec, setSpec] = useState<string>("");
  const [drawn, setDrawn] = useState(false);
  useEffect(() => {
    const abort = new AbortController();
    let clear: (() => void) | undefined;
    setDrawn(false);
    setError(null);
    (async () => {
      const text = await contentText(iterationId, item.content_hash, abort.signal);
      if (abort.signal.aborted) return;
      setSpec(text);
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const { drawFigure, figureFormat } = await import("../figure");
      if (abort.signal.aborted || !box.current) return;
      clear = await drawFigure(box.current, figureFormat(jsonValue<Record<string, unknown>>(item.metadata, {}), parsed), parsed);
      if (abort.signal.aborted) clear();
      else setDrawn(true);
    })().catch((e: Error) => !abort.signal.aborted && setError(e.message));
    return () => {
      abort.abort();
      clear?.();
    };
  }, [iterationId, item.content_hash]);
  const format = jsonValue<Record<string, unknown>>(item.metadata, {}).format;
  const download = () => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([spec], { type: "application/json" }));
    link.download = `${item.key.replace(/[^\w.-]+/g, "_")}-${item.step}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  };
  return (
    <figure class="media-figure" data-step={item.step} data-format={String(format ?? "")} data-drawn={drawn ? "1" : undefined}>
      <div ref={box} class="figure-box" />
      {item.caption && <figcaption>{item.caption}</figcaption>}
      {error && (
        <div class="error" role="alert">
          <strong>This figure could not be drawn</strong> ({error}); its spec:
          <pre class="spec">{spec.slice(0, 64 * 1024)}</pre>
        </div>
      )}
      {spec && (
        <button type="button" class="small" onClick={download}>
          download JSON
        </button>
      )}
    </figure>
  );
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function HistogramPanel({ name, histograms, want }: { name: string; histograms: Histogram[]; want: number | null }) {
  const steps = useMemo(() => histograms.map((h) => h.step), [histograms]);
  const at = stepIndex(steps, want);
  const setAt = (i: number) => showStep(steps[i]);
  const h = histograms[at];
  return (
    <section class="media-key media-histogram" data-key={name} aria-label={`histogram ${name}`}>
      <h2>
        {name} <span class="muted">histogram</span>
      </h2>
      <StepSlider name={name} steps={steps} at={at} onChange={setAt} />
      <Sampled shown={steps.length} of={histograms[0]?.key_steps ?? 0} />
      <InView minHeight={380}>
        {h && <HistogramBars h={h} />}
        {h && (
          <p class="muted small">
            {fmtNumber(h.count)} values · min {fmtNumber(h.min)} · max {fmtNumber(h.max)}
          </p>
        )}
        {histograms.length > 1 && <HistogramOverview histograms={histograms} at={at} onPick={setAt} />}
      </InView>
    </section>
  );
}

function HistogramBars({ h }: { h: Histogram }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current!;
    const [x, y] = bars(h);
    const fg = cssVar("--muted", "#666");
    const grid = cssVar("--grid", "#8882");
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 200,
      scales: { x: { time: false }, y: { range: (_u, _lo, hi) => [0, hi > 0 ? hi * 1.05 : 1] } },
      axes: [axis, { ...axis, size: 60 }],
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: [
        {},
        {
          label: "count",
          stroke: "#3a6df0",
          fill: "#3a6df088",
          width: 1,
          paths: uPlot.paths.bars!({ align: 1, size: [1, Infinity], gap: 1 }),
          points: { show: false },
        },
      ],
      hooks: {
        draw: [
          () => {
            el.dataset.drawn = "1";
          },
        ],
      },
    };
    plot.current?.destroy();
    el.dataset.drawn = "";
    plot.current = new uPlot(opts, [x, y] as uPlot.AlignedData, el);
  }, [h]);
  useEffect(() => () => plot.current?.destroy(), []);
  return <div ref={box} class="histogram-box" data-step={h.step} />;
}

/** Every step's distribution as a column of a heat map (darker: more values there). */
function HistogramOverview({ histograms, at, onPick }: { histograms: Histogram[]; at: number; onPick: (i: number) => void }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const ROWS = 48;
  const shape = useMemo(() => overview(histograms, ROWS), [histograms]);
  useEffect(() => {
    const c = canvas.current!;
    const width = Math.max(200, c.parentElement?.clientWidth ?? 600);
    const height = 140;
    const ratio = window.devicePixelRatio || 1;
    c.width = width * ratio;
    c.height = height * ratio;
    c.style.width = `${width}px`;
    c.style.height = `${height}px`;
    const g = c.getContext("2d")!;
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const n = shape.cells.length;
    const w = width / n;
    const rh = height / ROWS;
    for (let i = 0; i < n; i++) {
      const col = shape.cells[i];
      for (let r = 0; r < ROWS; r++) {
        if (col[r] <= 0) continue;
        g.fillStyle = `rgba(58, 109, 240, ${0.08 + 0.92 * col[r]})`;
        g.fillRect(i * w, height - (r + 1) * rh, Math.ceil(w), Math.ceil(rh));
      }
    }
    g.strokeStyle = cssVar("--fg", "#222");
    g.lineWidth = 1.5;
    g.strokeRect(at * w + 0.5, 0.5, Math.max(1, w - 1), height - 1);
    c.dataset.drawn = "1";
  }, [shape, at]);
  return (
    <figure class="histogram-overview">
      <canvas
        ref={canvas}
        aria-label="distribution over steps"
        onClick={(e) => {
          const rect = (e.target as HTMLCanvasElement).getBoundingClientRect();
          onPick(Math.min(histograms.length - 1, Math.max(0, Math.floor(((e.clientX - rect.left) / rect.width) * histograms.length))));
        }}
      />
      <figcaption class="muted small">
        over steps {histograms[0].step}–{histograms[histograms.length - 1].step}, values {fmtNumber(shape.lo)} to {fmtNumber(shape.hi)} (click a column to show its step)
      </figcaption>
    </figure>
  );
}
