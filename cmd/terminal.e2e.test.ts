import anyTest, { type TestFn } from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startStage, stopStage, type Stage } from '../src/testing/stage.js';
import { startFaultFront, type FaultFront } from '../src/testing/faults.js';
import { buildBundle, CLI } from '../src/testing/cli.js';

/**
 * What a person at a terminal sees (issue 25), under a real pseudo-terminal (`script -qc`) of 80
 * columns: progress that fits and says rate and time left, a plan that fits, and a terminal left as
 * it was found (cursor shown, lines wrapping) when the run ends, Ctrl-C included.
 */

interface Ctx extends Stage { bundle: string; front: FaultFront }
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  await startStage(t.context, 'terminal');
  t.context.bundle = join(t.context.dir, 'app.tar');
  await buildBundle(t.context.world, t.context.bundle);
  t.context.front = await startFaultFront(t.context.customer.host);
});

test.after.always(async (t) => {
  await t.context.front?.stop();
  await stopStage(t.context);
});

interface PtyRun { code: number | null; output: string }

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the built CLI on a pseudo-terminal of `cols` columns (stdin, stdout and stderr all on it,
 * no CI variable: what a person gets). `onOutput` sees the output so far and may type into the
 * terminal (`\x03` is Ctrl-C: the terminal sends SIGINT to the foreground process).
 */
function onPty(args: string[], opts: { cols?: number; onOutput?: (all: string, type: (s: string) => void) => void } = {}): Promise<PtyRun> {
  const env: Record<string, string> = { ...process.env as Record<string, string>, AIRGAP_RETRY_BASE_MS: '5', AIRGAP_HTTP_TIMEOUT_MS: '1500' };
  delete env.CI;
  const line = `stty cols ${opts.cols ?? 80} rows 24; exec ${[process.execPath, CLI, ...args].map(quote).join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', line, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const type = (s: string): void => void child.stdin.write(s);
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      opts.onOutput?.(output, type);
    });
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** The texts drawn, one per cursor position: split at line ends, carriage returns and escape sequences. */
function drawn(output: string): string[] {
  return output.split(/\r|\n|\x1b\[[0-9;?]*[A-Za-z]/).filter((s) => s.trim() !== '');
}

/** Every hide-cursor and no-wrap switch is undone later in the output. */
function restored(output: string): { cursor: boolean; wrap: boolean } {
  return {
    cursor: output.lastIndexOf('\x1b[?25l') < output.lastIndexOf('\x1b[?25h'),
    wrap: output.lastIndexOf('\x1b[?7l') < output.lastIndexOf('\x1b[?7h'),
  };
}

function pushArgs(t: { context: Ctx }): string[] {
  const { user, bundle, front } = t.context;
  return ['push', bundle, '--registry', `${front.host}/acme`, '--username', user.username, '--password', user.password, '--concurrency', '2'];
}

test.serial('Ctrl-C in the middle of a push gives the terminal back, says what was done and to run it again', async (t) => {
  const { front } = t.context;
  // One upload hangs: the push is certainly mid-way when Ctrl-C comes.
  front.set([{ on: 'upload', fault: { kind: 'stall' }, limit: 1, methods: ['PUT'] }]);
  let typed = false;
  const r = await onPty([...pushArgs(t), '--no-signatures'], {
    onOutput: (all, type) => {
      if (!typed && front.injected.stall > 0 && all.includes('\x1b[?25l')) {
        typed = true;
        setTimeout(() => type('\x03'), 300);
      }
    },
  });
  front.set([]);
  t.true(typed, r.output);
  t.is(r.code, 130, r.output);
  t.true(r.output.includes('\x1b[?25l') && r.output.includes('\x1b[?7l'), 'the progress display hid the cursor and turned wrapping off');
  t.deepEqual(restored(r.output), { cursor: true, wrap: true }, JSON.stringify(r.output.slice(-400)));
  t.regex(r.output, /airgap: push interrupted by SIGINT after \d+ of \d+ image\(s\), [\d.]+ [KMG]?B of [\d.]+ [KMG]?B; nothing was left half-written \(run the same command again to finish: what is already in the registry is not sent again\)/);
});

test.serial('push progress at 80 columns: sizes, rate and time left whole, and the terminal restored at the end', async (t) => {
  const { front } = t.context;
  // Uploads are told to come back in a second (503, Retry-After: 1): the push lasts over a second.
  front.set([{ on: 'upload', fault: { kind: 'status', status: 503, retryAfter: '1' }, limit: 2, methods: ['PUT'] }]);
  const r = await onPty(pushArgs(t), { cols: 80 });
  front.set([]);
  t.is(r.code, 0, r.output);
  const lines = drawn(r.output);
  for (const l of lines.filter((x) => /^(pushing|images) /.test(x))) t.true(l.length <= 80, `wider than 80 columns: ${JSON.stringify(l)}`);
  const bytes = lines.filter((l) => l.startsWith('pushing'));
  const last = bytes[bytes.length - 1] ?? '';
  t.regex(last, /100% ([\d.]+ [KMG]?B) \/ \1 {2}[\d.]+ [KMG]?B\/s {2}in (\d+m)?\d+s$/, `the final frame: ${last}`);
  t.true(bytes.some((l) => /[\d.]+ [KMG]?B\/s {2}ETA \d+(m\d\d)?s$/.test(l)), `rate and time left while it runs:\n${bytes.join('\n')}`);
  const images = lines.filter((l) => l.startsWith('images'));
  t.regex(images[images.length - 1] ?? '', /100% \d+\/\d+ \S+:\S+$/, 'the last image named, whole or shortened in the middle');
  t.deepEqual(restored(r.output), { cursor: true, wrap: true });
});

test.serial('plan at 80 columns fits the terminal, and says when two written forms are one image', async (t) => {
  const r = await onPty(['plan', '--manifests', t.context.world.appDir, '--offline'], { cols: 80 });
  t.is(r.code, 0, r.output);
  const lines = r.output.split(/\r?\n/).filter((l) => l !== '');
  for (const l of lines) t.true(l.length <= 80, `wider than 80 columns: ${JSON.stringify(l)}`);
  t.regex(r.output.replace(/\s+/g, ' '), /note: 13 references name 12 images: \S+busybox:1\.36 and \S+busybox:1\.36@sha256:[0-9a-f]{12}… is one image written with and without a digest; the bundle holds it once/);
});
