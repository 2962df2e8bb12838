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
  stop(): void;
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

/** cli-progress is loaded only for a terminal: pipelines and --json never pay for it. */
export async function makeRenderer(mode: { json: boolean; tty: boolean }): Promise<Renderer> {
  if (mode.json) return { start() {}, event() {}, info() {}, stop() {} };
  if (!mode.tty) return new LineRenderer();
  const { default: cliProgress } = await import('cli-progress');
  return new BarRenderer(cliProgress);
}

class LineRenderer implements Renderer {
  readonly #done = new DoneBytes();
  #bytes = 0;
  #total = 0;
  #images = 0;
  #totalImages = 0;
  #verb = '';
  #timer: NodeJS.Timeout | undefined;
  #started = Date.now();

  start(totalBytes: number, totalImages: number, verb: string): void {
    this.#total = totalBytes;
    this.#totalImages = totalImages;
    this.#verb = verb;
    this.#started = Date.now();
    process.stderr.write(`${verb} ${totalImages} image(s), ${humanBytes(totalBytes)} of content\n`);
    this.#timer = setInterval(() => this.#heartbeat(), 10_000);
    this.#timer.unref();
  }

  #heartbeat(): void {
    const secs = (Date.now() - this.#started) / 1000;
    process.stderr.write(`  ${humanBytes(this.#bytes)} / ${humanBytes(this.#total)} (${humanBytes(this.#bytes / Math.max(secs, 0.001))}/s), ${this.#images}/${this.#totalImages} images\n`);
  }

  event(e: CopyEvent): void {
    this.#bytes += this.#done.of(e);
    if (e.type === 'image-done') {
      this.#images++;
      process.stderr.write(`  [${this.#images}/${this.#totalImages}] ${e.image} ${e.digest.slice(0, 19)}\n`);
    }
  }

  info(line: string): void {
    process.stderr.write(line + '\n');
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}

class BarRenderer implements Renderer {
  readonly #cli: CliProgress;
  readonly #done = new DoneBytes();
  #multi: cliProgressModule.MultiBar | undefined;
  #bytesBar: cliProgressModule.SingleBar | undefined;
  #imagesBar: cliProgressModule.SingleBar | undefined;
  #bytes = 0;
  #images = 0;
  #totalBytes = 0;
  #totalImages = 0;

  constructor(cli: CliProgress) {
    this.#cli = cli;
  }

  start(totalBytes: number, totalImages: number, verb: string): void {
    this.#multi = new this.#cli.MultiBar({
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      format: '{label} [{bar}] {percentage}% | {detail}',
    }, this.#cli.Presets.shades_classic);
    this.#bytesBar = this.#multi.create(Math.max(totalBytes, 1), 0, { label: `${verb} bytes `, detail: `0 B / ${humanBytes(totalBytes)}` });
    this.#imagesBar = this.#multi.create(Math.max(totalImages, 1), 0, { label: `${verb} images`, detail: `0/${totalImages}` });
    this.#totalBytes = totalBytes;
    this.#totalImages = totalImages;
  }

  event(e: CopyEvent): void {
    const n = this.#done.of(e);
    if (n !== 0) {
      this.#bytes += n;
      this.#bytesBar?.update(this.#bytes, { detail: `${humanBytes(this.#bytes)} / ${humanBytes(this.#totalBytes)}` });
    }
    if (e.type === 'image-done') {
      this.#images++;
      this.#imagesBar?.update(this.#images, { detail: `${this.#images}/${this.#totalImages} ${e.image}` });
    }
  }

  info(line: string): void {
    if (this.#multi) this.#multi.log(line + '\n');
    else process.stderr.write(line + '\n');
  }

  stop(): void {
    this.#multi?.stop();
  }
}
