import { SingleBar } from "cli-progress";

/**
 * Progress on stderr for every command that shows some (index, jobs --follow, up, rebuild, eval).
 * On a terminal: a bar redrawn in place. Anywhere else (a pipe through `tee`, a CI log, a file) a
 * redraw is a new line each time, so plain lines instead: one at the start, one whenever another
 * PLAIN_EVERY_PCT of the total is done or PLAIN_EVERY_MS have passed with something new to say,
 * and one at the end.
 */
export const PLAIN_EVERY_MS = 5000;
export const PLAIN_EVERY_PCT = 10;

export interface ProgressOptions {
  /** What is being done, e.g. "indexing". */
  label: string;
  /** What is counted, e.g. "docs". */
  unit: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** The clock plain lines are paced by. */
  now?: () => number;
}

export interface Progress {
  /** True when a bar redraws in place; false when plain lines are printed (messages may then go out as lines of their own). */
  readonly redraws: boolean;
  /** `detail` is shown after the counts, e.g. a rate or a state. */
  update(value: number, detail?: string): void;
  stop(): void;
}

export function startProgress(total: number, opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  return stream.isTTY === true ? barProgress(total, opts, stream) : plainProgress(total, opts, stream);
}

function barProgress(total: number, opts: ProgressOptions, stream: NodeJS.WritableStream): Progress {
  const bar = new SingleBar({
    format: `  ${opts.label} [{bar}] {value}/{total} ${opts.unit} | {percentage}% | eta {eta_formatted}{detail}`,
    stream,
    hideCursor: true,
    etaBuffer: 50,
  });
  bar.start(total, 0, { detail: "" });
  return {
    redraws: true,
    update: (value, detail) => bar.update(Math.min(value, total), { detail: detail ? ` | ${detail}` : "" }),
    stop: () => bar.stop(),
  };
}

function plainProgress(total: number, opts: ProgressOptions, stream: NodeJS.WritableStream): Progress {
  const now = opts.now ?? Date.now;
  const started = now();
  let value = 0;
  let detail = "";
  let startValue: number | null = null;
  let printed = { at: started, text: "", step: -1 };
  const pct = () => (total > 0 ? Math.floor((100 * Math.min(value, total)) / total) : 100);
  const line = () => {
    const parts = [`  ${opts.label} ${Math.min(value, total)}/${total} ${opts.unit} (${pct()}%)`];
    if (detail) parts.push(detail);
    const eta = etaSeconds();
    if (eta !== null) parts.push(`eta ${duration(eta)}`);
    return parts.join(" | ");
  };
  // From the pace since the first update, so work already done before (a resumed job) does not count.
  const etaSeconds = () => {
    const done = value - (startValue ?? value);
    if (done <= 0 || value >= total) return null;
    return ((now() - started) / 1000 / done) * (total - value);
  };
  // The text without the eta, which changes at every tick: a line is due only when something else did.
  const state = () => `${value}\u0000${detail}`;
  const print = () => {
    stream.write(`${line()}\n`);
    printed = { at: now(), text: state(), step: Math.floor(pct() / PLAIN_EVERY_PCT) };
  };
  print();
  return {
    redraws: false,
    update(v, d = "") {
      startValue ??= v;
      value = v;
      detail = d;
      const step = Math.floor(pct() / PLAIN_EVERY_PCT);
      const due = step > printed.step || now() - printed.at >= PLAIN_EVERY_MS;
      if (due && state() !== printed.text) print();
    },
    stop() {
      if (state() !== printed.text) print();
    },
  };
}

function duration(s: number): string {
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m`;
}
