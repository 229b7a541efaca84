import { describe, expect, it } from "vitest";
import { fmtBytes, fmtDuration, fmtNumber, toMs } from "./format";

describe("formatting", () => {
  it("shows numbers compactly", () => {
    expect(fmtNumber(0.123456789)).toBe("0.123457");
    expect(fmtNumber(42)).toBe("42");
    expect(fmtNumber(1e-7)).toBe("1.0000e-7");
    expect(fmtNumber(NaN)).toBe("NaN");
    expect(fmtNumber(-Infinity)).toBe("-∞");
    expect(fmtNumber(null)).toBe("");
  });

  it("shows durations and sizes", () => {
    expect(fmtDuration(0.25)).toBe("250 ms");
    expect(fmtDuration(75)).toBe("1 min 15 s");
    expect(fmtDuration(3 * 3600 + 60)).toBe("3 h 1 min");
    expect(fmtBytes(2048)).toBe("2.0 KiB");
  });

  it("reads the server's naive UTC times", () => {
    expect(toMs("2026-01-01T00:00:00")).toBe(Date.UTC(2026, 0, 1));
    expect(toMs("2026-01-01T00:00:00Z")).toBe(Date.UTC(2026, 0, 1));
    expect(toMs(5)).toBe(5);
  });
});
