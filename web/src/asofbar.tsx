// The "as of" control of the experiment and run views (time travel, see asof.ts).
import { useEffect, useState } from "preact/hooks";
import { describeAsOf, isoToLocalInput, localInputToIso, OFFSET } from "./asof";
import { Link, navigate } from "./nav";

/**
 * The "as of" control: a time or a log offset, applied to the view's URL; with a bound
 * set, a banner says the view shows the past (read-only) and links back to now.
 */
export function AsOfBar({ asOf, what }: { asOf: string; what: string }) {
  const [open, setOpen] = useState(false);
  const [kind, setKind] = useState<"time" | "offset">(OFFSET.test(asOf) ? "offset" : "time");
  const [draft, setDraft] = useState(asOf ? (OFFSET.test(asOf) ? asOf : isoToLocalInput(asOf)) : "");
  useEffect(() => {
    setKind(OFFSET.test(asOf) ? "offset" : "time");
    setDraft(asOf ? (OFFSET.test(asOf) ? asOf : isoToLocalInput(asOf)) : "");
  }, [asOf]);
  const here = () => new URLSearchParams(location.search);
  const target = (value: string) => {
    const q = here();
    if (value) q.set("as_of", value);
    else q.delete("as_of");
    const s = q.toString();
    return location.pathname + (s ? `?${s}` : "");
  };
  const value = kind === "offset" ? (OFFSET.test(draft.trim()) ? draft.trim() : "") : draft ? localInputToIso(draft) : "";
  const form = (
    <form
      class="toolbar as-of-form"
      aria-label="as of"
      onSubmit={(e) => {
        e.preventDefault();
        if (!value) return;
        setOpen(false);
        navigate(target(value));
      }}
    >
      <select aria-label="as of kind" value={kind} onChange={(e) => { setKind((e.target as HTMLSelectElement).value as "time" | "offset"); setDraft(""); }}>
        <option value="time">time</option>
        <option value="offset">log offset</option>
      </select>
      {kind === "time" ? (
        <input type="datetime-local" step="1" aria-label="as of time" value={draft} onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
      ) : (
        <input type="text" inputMode="numeric" pattern="[0-9]*" aria-label="as of offset" placeholder="offset, e.g. 1200" value={draft} onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
      )}
      <button type="submit" disabled={!value}>
        Show as of
      </button>
    </form>
  );
  if (!asOf) {
    return (
      <div class="as-of-bar">
        <button type="button" class="small" aria-expanded={open} onClick={() => setOpen(!open)} title="show this view as it stood at a past time or log offset">
          ⏱ as of…
        </button>
        {open && form}
      </div>
    );
  }
  return (
    <div class="as-of-bar past" role="status">
      <span>
        Showing {what} <strong>as of {describeAsOf(asOf)}</strong>: the past, read-only.
      </span>{" "}
      <Link href={target("")} class="button">
        Back to now
      </Link>
      {form}
    </div>
  );
}
