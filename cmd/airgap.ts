import { Command, Option, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { AirgapError, type ErrorCode } from '../src/errors.js';
import { runCleanupsSync } from '../src/cleanup.js';
import { TOOL_VERSION } from '../src/version.js';
import { makeRenderer, type Renderer } from './render.js';
import { commands, type GlobalFlags } from './commands.js';
import { exitStatus } from './exit.js';

// Bundled by scripts/bundle.mjs into the `airgap` executable, dist/cmd/airgap.js.

/**
 * Flags → command → render. The only place that writes the final result, maps error codes to exit
 * statuses (cmd/exit.ts) and exits.
 */

// A reader that stops early (`airgap inspect B | head`) closes the pipe: stop quietly, as the
// Unix tools do, instead of a stack trace from the failed write.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

let debug = process.argv.includes('--debug');
let jsonMode = process.argv.includes('--json');
/** The command running now and its display: an interrupt stops the display and says how far it got. */
let running: { name: string; renderer: Renderer } | undefined;

/** Gives the terminal back (cursor shown, wrapping on) however the process ends. */
function stopDisplay(): void {
  running?.renderer.stop();
}
process.on('exit', stopDisplay);

function fail(e: unknown): never {
  let code: ErrorCode | 'E_INTERNAL' = 'E_INTERNAL';
  let message: string;
  let hint: string | undefined;
  if (e instanceof AirgapError) {
    code = e.code;
    message = e.message;
    hint = e.hint;
  } else if (e instanceof CommanderError) {
    // Help and --version exit 0; the parser's complaint is already on stderr (configureOutput).
    if (e.exitCode === 0 || !jsonMode) process.exit(e.exitCode === 0 ? 0 : 2);
    const error = { code: 'E_USAGE', message: oneLine(e.message.replace(/^error: /, '')), hint: 'see airgap --help' };
    process.stdout.write(JSON.stringify({ error }) + '\n');
    process.exit(2);
  } else {
    message = `internal error: ${e instanceof Error ? e.message : String(e)}`;
    hint = debug ? undefined : 'run again with --debug and report the output';
  }
  stopDisplay();
  const line = `airgap: ${message}${hint ? ` (${hint})` : ''}`;
  process.stderr.write(line.replace(/\s*\n\s*/g, ' ') + '\n');
  if (debug) {
    let cur: unknown = e;
    while (cur instanceof Error) {
      process.stderr.write(`${cur.stack ?? cur.message}\n`);
      cur = cur.cause;
      if (cur) process.stderr.write('caused by: ');
    }
  }
  if (jsonMode) process.stdout.write(JSON.stringify({ error: { code, message, ...(hint ? { hint } : {}) } }) + '\n');
  process.exit(exitStatus(code));
}

/** Commander's multi-line complaints ("unknown command 'pussh'\n(Did you mean push?)") as one line. */
function oneLine(s: string): string {
  return s.trim().replace(/\s*\n\s*/g, ' ');
}

function onSignal(sig: NodeJS.Signals): void {
  // Nothing half-written: remove temp files synchronously, then leave. Tags are only ever written
  // after their content, so stopping a push here leaves no tag on incomplete content.
  runCleanupsSync();
  stopDisplay();
  const name = running?.name;
  const done = running?.renderer.done();
  const again = name === 'push' || name === 'install'
    ? 'run the same command again to finish: what is already in the registry is not sent again'
    : 'run the same command again to finish';
  const message = `${name ?? 'airgap'} interrupted by ${sig}${done ? ` after ${done}` : ''}; nothing was left half-written`;
  process.stderr.write(`airgap: ${message} (${again})\n`);
  if (jsonMode) process.stdout.write(JSON.stringify({ error: { code: 'E_INTERRUPTED', message, hint: again } }) + '\n');
  process.exit(130);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);

function renderer(flags: GlobalFlags): Promise<Renderer> {
  return makeRenderer({ json: flags.json, tty: Boolean(process.stderr.isTTY) && !process.env.CI });
}

const program = new Command('airgap')
  .description('Carry a Kubernetes application and all of its container images across an air gap')
  .version(TOOL_VERSION)
  .exitOverride()
  // --json and --debug are accepted before the command too (airgap --json push …).
  .option('--json', 'print a machine-readable result on stdout')
  .option('--debug', 'print how each registry host is reached, and stack traces and causes on error')
  .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(`airgap: ${oneLine(s.replace(/^error: /, ''))} (see airgap --help)\n`) })
  .addHelpText('after', '\nRun airgap <command> --help for its flags and an example. Exit status: 0 ok, 1 registry/network/output, 2 bad input, 3 integrity, 130 interrupted.');

for (const c of commands) {
  const cmd = program.command(c.name).description(c.description);
  for (const a of c.args ?? []) cmd.argument(a);
  for (const o of c.options) {
    const text = `${o.required ? '(required) ' : ''}${o.description}${o.defaultText ? ` (default: ${o.defaultText})` : ''}`;
    const opt = new Option(o.flags, text);
    if (o.default !== undefined) opt.default(o.default);
    if (o.parse) opt.argParser(o.parse);
    cmd.addOption(opt);
  }
  cmd.addOption(new Option('--json', 'print a machine-readable result on stdout'));
  cmd.addOption(new Option('--debug', 'print how each registry host is reached, and stack traces and causes on error'));
  cmd.addHelpText('after', `\nExample:\n  $ ${c.example}\n`);
  // Commander's own complaints (unknown flag, missing BUNDLE) point at this command's help.
  cmd.configureOutput({
    writeErr: (s) => process.stderr.write(s),
    outputError: (s, write) => write(`airgap: ${c.name}: ${s.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')} (see airgap ${c.name} --help)\n`),
  });
  cmd.action(async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const opts = command.opts() as Record<string, unknown>;
    const globals = program.opts() as Record<string, unknown>;
    const positional = command.args;
    const flags: GlobalFlags = { json: Boolean(opts.json || globals.json), debug: Boolean(opts.debug || globals.debug) };
    debug = flags.debug;
    jsonMode = flags.json;
    // Every missing flag at once: one try to learn them all.
    const missing = c.options.filter((o) => o.required && [undefined, ''].includes(opts[new Option(o.flags).attributeName()] as string | undefined))
      .map((o) => o.flags.split(/[ ,]/)[0]!);
    if (missing.length > 0) {
      fail(new AirgapError('E_USAGE', `${c.name}: missing ${missing.join(', ')}, which it needs`, { hint: `see airgap ${c.name} --help` }));
    }
    const r = await renderer(flags);
    running = { name: c.name, renderer: r };
    // A promise that never settles lets Node exit quietly with status 0: never report that as success.
    const guard = () => fail(new AirgapError('E_INTERNAL', `${c.name} stopped before finishing (an internal wait never completed)`,
      { hint: 'run again with --debug and report the output' }));
    process.once('beforeExit', guard);
    try {
      const result = await c.run(positional, opts, { flags, renderer: r, readPasswordStdin });
      process.off('beforeExit', guard);
      r.stop();
      if (flags.json) process.stdout.write(JSON.stringify(result.json, null, 2) + '\n');
      else if (result.text) process.stdout.write(result.text.endsWith('\n') ? result.text : result.text + '\n');
      if (result.failed) process.stderr.write(`airgap: ${result.failed.problem}\n`);
      // The result is out: leave once it is flushed, rather than wait ~0.1 s for idle keep-alive
      // connections and library timers to wind down (a re-push is otherwise mostly that wait).
      const code = result.failed ? exitStatus(result.failed.code) : (result.exitCode ?? 0);
      process.stdout.write('', () => process.exit(code));
    } catch (e) {
      process.off('beforeExit', guard);
      r.stop();
      fail(e);
    }
  });
}

/** The password piped in; nothing there is an error now, not an empty password found at the registry. */
function readPasswordStdin(): string {
  let text: string;
  try {
    text = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new AirgapError('E_USAGE', '--password-stdin: could not read standard input', { cause: e });
  }
  if (text === '') {
    throw new AirgapError('E_USAGE', '--password-stdin: nothing on standard input',
      { hint: 'pipe the password in, e.g. printf \'%s\' "$PASSWORD" | airgap …, or give --password' });
  }
  return text;
}

program.parseAsync(process.argv).catch(fail);
