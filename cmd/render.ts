import type cliProgressModule from 'cli-progress';
import type { CopyEvent } from '../src/copy.js';

type CliProgress = typeof cliProgressModule;

/**
 * Turns engine events into what a person or a pipeline sees: progress bars on a TTY, a plain line
 * per finished image (and a heartbeat) otherwise, nothing but the final JSON with --json.
 * Everything goes to stderr; stdout is reserved for results.
 */
export interface Renderer {
  /** Total work, once known. */
  start(totalBytes: number, totalImages: number, verb: string): void;
  event(e: CopyEvent): void;
  /** A line of information (never with --json). */
  info(line: string): void;
  /** Ends the display and gives the terminal back as it was (cursor shown, lines wrapping); safe to call twice. */
  stop(): void;
  /** What was done so far ("3 of 7 image(s), 1.2 MB of 4.5 MB"), once start() has been called. */
  done(): string | undefined;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/**
 * Bytes a progress display counts as done for an event: streamed blob bytes as they move, and the
 * whole size of content that needed no transfer (already there, mounted) or is a small manifest.
 * Each digest counts once, however many target repositories receive it (the totals do the same).
 */
class DoneBytes {
  readonly #counted = new Set<string>();

  of(e: CopyEvent): number {
    if (e.type === 'blob-progress') return e.bytes;
    if (e.type !== 'blob-done' && e.type !== 'manifest-done') return 0;
    if (this.#counted.has(e.digest)) return 0;
    this.#counted.add(e.digest);
    return e.type === 'blob-done' && e.outcome === 'uploaded' ? 0 : e.size;
  }
}

/** Counts what a run has done, for every renderer: its display, and the line an interrupt prints. */
class Tally {
  readonly #done = new DoneBytes();
  bytes = 0;
  totalBytes = 0;
  images = 0;
  totalImages = 0;
  started: number | undefined;

  start(totalBytes: number, totalImages: number): void {
    this.totalBytes = totalBytes;
    this.totalImages = totalImages;
    this.started = Date.now();
  }

  /** Bytes this event adds. */
  event(e: CopyEvent): number {
    const n = this.#done.of(e);
    this.bytes += n;
    if (e.type === 'image-done') this.images++;
    return n;
  }

  done(): string | undefined {
    if (this.started === undefined) return undefined;
    return `${this.images} of ${this.totalImages} image(s), ${humanBytes(this.bytes)} of ${humanBytes(this.totalBytes)}`;
  }

  /** Bytes per second since start. */
  rate(): number {
    return this.bytes / Math.max((Date.now() - (this.started ?? Date.now())) / 1000, 0.001);
  }
}

/** cli-progress is loaded only for a terminal: pipelines and --json never pay for it. */
export async function makeRenderer(mode: { json: boolean; tty: boolean }): Promise<Renderer> {
  if (mode.json) {
    const tally = new Tally();
    return { start: (b, i) => tally.start(b, i), event: (e) => void tally.event(e), info() {}, stop() {}, done: () => tally.done() };
  }
  if (!mode.tty) return new LineRenderer();
  const { default: cliProgress } = await import('cli-progress');
  return new BarRenderer(cliProgress);
}

/** `12s`, `4m05s`, `1h02m`. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Cuts the middle out of a text longer than `width`, keeping both ends (a name's registry and its tag). */
export function shorten(text: string, width: number): string {
  if (text.length <= width) return text;
  if (width <= 1) return text.slice(0, Math.max(width, 0));
  const head = Math.ceil((width - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (width - 1 - head))}`;
}

class LineRenderer implements Renderer {
  readonly #tally = new Tally();
  #verb = '';
  #timer: NodeJS.Timeout | undefined;

  start(totalBytes: number, totalImages: number, verb: string): void {
    this.#tally.start(totalBytes, totalImages);
    this.#verb = verb;
    process.stderr.write(`${verb} ${totalImages} image(s), ${humanBytes(totalBytes)} of content\n`);
    this.#timer = setInterval(() => this.#heartbeat(), 10_000);
    this.#timer.unref();
  }

  #heartbeat(): void {
    const t = this.#tally;
    process.stderr.write(`  ${humanBytes(t.bytes)} / ${humanBytes(t.totalBytes)} (${humanBytes(t.rate())}/s), ${t.images}/${t.totalImages} images\n`);
  }

  event(e: CopyEvent): void {
    this.#tally.event(e);
    if (e.type === 'image-done') {
      process.stderr.write(`  [${this.#tally.images}/${this.#tally.totalImages}] ${e.image} ${e.digest.slice(0, 19)}\n`);
    }
  }

  info(line: string): void {
    process.stderr.write(line + '\n');
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  done(): string | undefined {
    return this.#tally.done();
  }
}

/**
 * Two lines that fit the terminal's width whatever it is: the bar gives up room first, then the
 * image name is shortened in the middle; sizes, rate and time left are never cut.
 *   pushing  [#######-------]  48% 12.3 MB / 25.6 MB  4.1 MB/s  ETA 3s
 *   images   [#####---------]  3/7 registry.corp:5000/acme/api:1.4.2
 */
class BarRenderer implements Renderer {
  readonly #cli: CliProgress;
  readonly #tally = new Tally();
  #multi: cliProgressModule.MultiBar | undefined;
  #bytesBar: cliProgressModule.SingleBar | undefined;
  #imagesBar: cliProgressModule.SingleBar | undefined;
  #verb = '';
  #lastImage = '';

  constructor(cli: CliProgress) {
    this.#cli = cli;
  }

  start(totalBytes: number, totalImages: number, verb: string): void {
    this.#tally.start(totalBytes, totalImages);
    this.#verb = verb;
    this.#multi = new this.#cli.MultiBar({
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      format: (_options, params, payload: { line?: 'bytes' | 'images' }) => this.#line(payload.line ?? 'bytes', params.progress, params.maxWidth),
    });
    this.#bytesBar = this.#multi.create(Math.max(totalBytes, 1), 0, { line: 'bytes' });
    this.#imagesBar = this.#multi.create(Math.max(totalImages, 1), 0, { line: 'images' });
  }

  #line(which: 'bytes' | 'images', progress: number, maxWidth: number): string {
    const t = this.#tally;
    // One column spare: a line as wide as the terminal would wrap once wrapping is back on.
    const width = Math.max(20, maxWidth - 1);
    const label = (which === 'bytes' ? this.#verb : 'images').padEnd(Math.max(this.#verb.length, 6));
    const pct = `${String(Math.floor(Math.min(Math.max(progress, 0), 1) * 100)).padStart(3)}%`;
    let tail: string;
    if (which === 'bytes') {
      const secs = (Date.now() - (t.started ?? Date.now())) / 1000;
      const rate = t.rate();
      const left = t.totalBytes - t.bytes;
      const timing = left <= 0 ? `in ${humanDuration(secs)}` : secs < 1 || rate <= 0 ? 'ETA --' : `ETA ${humanDuration(left / rate)}`;
      tail = `${pct} ${humanBytes(t.bytes)} / ${humanBytes(t.totalBytes)}  ${humanBytes(rate)}/s  ${timing}`;
    } else {
      tail = `${pct} ${t.images}/${t.totalImages}`;
    }
    // The bar takes what is left, between 10 and 30 columns; without 10 it goes.
    const room = width - label.length - tail.length - 4;
    const barWidth = Math.min(30, room);
    const done = Math.round(Math.min(Math.max(progress, 0), 1) * Math.max(barWidth, 0));
    let line = barWidth >= 10 ? `${label} [${'#'.repeat(done)}${'-'.repeat(barWidth - done)}] ${tail}` : `${label} ${tail}`;
    if (which === 'images' && this.#lastImage !== '') {
      const space = width - line.length - 1;
      if (space >= 8) line += ` ${shorten(this.#lastImage, space)}`;
    }
    return line.length > width ? shorten(line, width) : line;
  }

  event(e: CopyEvent): void {
    const n = this.#tally.event(e);
    if (n !== 0) this.#bytesBar?.update(this.#tally.bytes);
    if (e.type === 'image-done') {
      this.#lastImage = e.image;
      this.#imagesBar?.update(this.#tally.images);
    }
  }

  info(line: string): void {
    if (this.#multi) this.#multi.log(line + '\n');
    else process.stderr.write(line + '\n');
  }

  stop(): void {
    const multi = this.#multi;
    this.#multi = undefined;
    // cli-progress shows the cursor and turns line wrapping back on here.
    multi?.stop();
  }

  done(): string | undefined {
    return this.#tally.done();
  }
}
