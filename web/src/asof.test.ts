import { describe, expect, it } from "vitest";
import { afterBound, asOfOf, describeAsOf, isAsOf, isoToLocalInput, localInputToIso, toUtcMs, withAsOf } from "./asof";

describe("as of (time travel)", () => {
  it("takes offsets and ISO times, as the server does", () => {
    expect(isAsOf("1200")).toBe(true);
    expect(isAsOf("2026-11-17T18:00:00")).toBe(true);
    expect(isAsOf("2026-11-17T18:00:00.123Z")).toBe(true);
    expect(isAsOf("2026-11-17 18:00+01:00")).toBe(true);
    expect(isAsOf("yesterday")).toBe(false);
    expect(isAsOf("-1")).toBe(false);
    expect(asOfOf(new URLSearchParams("as_of=oops"))).toBe("");
    expect(asOfOf(new URLSearchParams("as_of=17"))).toBe("17");
  });

  it("reads a time without a zone as UTC, like the server", () => {
    expect(toUtcMs("2026-01-02T03:04:05")).toBe(Date.UTC(2026, 0, 2, 3, 4, 5));
    expect(toUtcMs("2026-01-02")).toBe(Date.UTC(2026, 0, 2));
    expect(toUtcMs("2026-01-02T03:04:05+01:00")).toBe(Date.UTC(2026, 0, 2, 2, 4, 5));
  });

  it("round-trips the time input (local) and the URL (UTC)", () => {
    const iso = "2026-05-06T07:08:09Z";
    expect(localInputToIso(isoToLocalInput(iso))).toBe(iso);
    expect(localInputToIso("")).toBe("");
    expect(describeAsOf("42")).toBe("log offset 42");
  });

  it("keeps the bound in links and tells events after it", () => {
    expect(withAsOf("/r/x", "12", { runs: ["a", "b"] })).toBe("/r/x?runs=a%2Cb&as_of=12");
    expect(withAsOf("/r/x", "")).toBe("/r/x");
    expect(afterBound("10", 11, "2000-01-01T00:00:00")).toBe(true);
    expect(afterBound("10", 10, "2999-01-01T00:00:00")).toBe(false);
    expect(afterBound("2026-01-01T00:00:00Z", 0, "2026-01-01T00:00:01")).toBe(true);
    expect(afterBound("", 99, "2999-01-01T00:00:00")).toBe(false);
  });
});
