// Figures drawn with their official libraries: Plotly JSON with plotly.js (its cartesian
// bundle: scatter, bar, box, heatmap, histogram, contour, pie, violin, image -- no WebGL,
// 3-D or maps) and Vega-Lite JSON with vega-lite compiled to Vega and run by Vega's
// expression interpreter (the page's CSP allows no eval). This module is loaded only when
// a figure is shown (media.tsx imports it dynamically), and the libraries only when a
// figure of theirs is: their own minified builds, served by us as assets named by their
// content (so they keep their names, and their bytes in git, until the library changes).
import { expressionInterpreter } from "vega-interpreter";
import type * as VegaLib from "vega";
import type * as VegaLiteLib from "vega-lite";
import plotlyUrl from "plotly.js-cartesian-dist-min/plotly-cartesian.min.js?url";
// the packages export only their ES modules; their UMD builds by path
import vegaUrl from "../node_modules/vega/build/vega.min.js?url";
import vegaLiteUrl from "../node_modules/vega-lite/build/vega-lite.min.js?url";

declare global {
  interface Window {
    Plotly?: PlotlyLib;
    vega?: typeof VegaLib;
    vegaLite?: typeof VegaLiteLib;
  }
}

const scripts = new Map<string, Promise<void>>();

/** Load a script of ours once (a library's UMD build: it sets a global). */
function script(src: string): Promise<void> {
  let done = scripts.get(src);
  if (!done) {
    done = new Promise<void>((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.async = false;
      el.onload = () => resolve();
      el.onerror = () => {
        scripts.delete(src);
        el.remove();
        reject(new Error(`could not load ${src}`));
      };
      document.head.appendChild(el);
    });
    scripts.set(src, done);
  }
  return done;
}

export type FigureFormat = "plotly" | "vega-lite";

interface PlotlyLib {
  newPlot(el: HTMLElement, data: unknown[], layout?: Record<string, unknown>, config?: Record<string, unknown>): Promise<unknown>;
  purge(el: HTMLElement): void;
}

/** Draw `spec` into `el`; the returned function clears it. */
export async function drawFigure(el: HTMLElement, format: FigureFormat, spec: Record<string, unknown>): Promise<() => void> {
  if (format === "plotly") {
    adoptPlotlyStyles();
    await script(plotlyUrl);
    const Plotly = window.Plotly!;
    const data = Array.isArray(spec.data) ? (spec.data as unknown[]) : [];
    const layout = { autosize: true, margin: { l: 50, r: 20, t: 30, b: 40 }, ...((spec.layout as Record<string, unknown>) ?? {}) };
    await Plotly.newPlot(el, data, layout, { displaylogo: false, responsive: true, showSendToCloud: false, showLink: false });
    return () => Plotly.purge(el);
  }
  await script(vegaUrl);
  await script(vegaLiteUrl); // after vega: it uses the global vega
  const vega = window.vega!;
  const compiled = window.vegaLite!.compile(spec as never).spec;
  const runtime = vega.parse(compiled, undefined, { ast: true });
  // a logged spec carries its data: it may not make the page fetch anything (CSP aside)
  const loader = vega.loader();
  const refuse = (uri: string) => Promise.reject(new Error(`a figure's data must be inline, not loaded from ${uri}`));
  loader.load = refuse;
  loader.sanitize = refuse;
  // Vega reports errors and failed loads ("Loading failed", a warning) to its logger, not
  // to runAsync: collect them and fail the drawing with them (the page shows the spec)
  const errors: string[] = [];
  const logger = vega.logger(vega.Warn, undefined, (method, _level, args) => {
    if (method === "error" || /failed/i.test(String(args[0]))) errors.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(" "));
    else console.warn(...args);
  });
  const view = new vega.View(runtime, { expr: expressionInterpreter, renderer: "canvas", container: el, hover: true, loader, logger });
  await view.runAsync();
  if (errors.length) {
    view.finalize();
    el.replaceChildren();
    throw new Error(errors[0]);
  }
  return () => view.finalize();
}

/** The format of a figure: its metadata's, or guessed from the spec as the SDK does. */
export function figureFormat(metadata: Record<string, unknown>, spec: Record<string, unknown>): FigureFormat {
  const f = metadata.format;
  if (f === "plotly" || f === "vega-lite") return f;
  return String(spec.$schema ?? "").includes("vega") || "mark" in spec ? "vega-lite" : "plotly";
}

/**
 * plotly.js adds its stylesheet as an inline <style id="plotly.js-style-global">, which
 * the page's CSP (style-src 'self') refuses. It inserts its rules into the `sheet` of
 * whatever element has that id, so one that holds a constructed stylesheet adopted by
 * the document (CSSOM, which the CSP allows) takes them instead.
 */
function adoptPlotlyStyles(): void {
  const id = "plotly.js-style-global";
  if (document.getElementById(id)) return;
  const sheet = new CSSStyleSheet();
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const holder = document.createElement("meta");
  holder.id = id;
  Object.defineProperty(holder, "sheet", { value: sheet });
  document.head.appendChild(holder);
}
