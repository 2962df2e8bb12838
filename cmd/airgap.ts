import { Command, Option, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { AirgapError, type ErrorCode } from '../src/errors.js';
import { runCleanupsSync } from '../src/cleanup.js';
import { TOOL_VERSION } from '../src/version.js';
import { makeRenderer, type Renderer } from './render.js';
import { commands, type GlobalFlags } from './commands.js';

// Started by cmd/launch.ts (the `airgap` executable), which also sets the V8 flags.

/**
 * Flags → command → render. The only place that writes the final result, maps error codes to exit
 * statuses and exits. Exit statuses: 0 ok; 1 a registry, network or output failure; 2 bad input
 * (flags, manifests, license, references, digest rule, name collisions); 3 integrity (digest
 * mismatch, a bad bundle, verify found problems); 130 interrupted.
 */
const EXIT: Partial<Record<ErrorCode, number>> = {
  E_USAGE: 2, E_REFERENCE: 2, E_MANIFESTS: 2, E_LICENSE: 2, E_DIGEST_ONLY: 2, E_NO_IMAGES: 2, E_COLLISION: 2,
  E_DIGEST_MISMATCH: 3, E_BUNDLE: 3, E_SIGNATURE: 3, E_INTERRUPTED: 130,
};

let debug = process.argv.includes('--debug');
let jsonMode = process.argv.includes('--json');

function fail(e: unknown): never {
  let code: ErrorCode | 'E_INTERNAL' = 'E_INTERNAL';
  let message: string;
  let hint: string | undefined;
  if (e instanceof AirgapError) {
    code = e.code;
    message = e.message;
    hint = e.hint;
  } else if (e instanceof CommanderError) {
    process.exit(e.exitCode === 0 ? 0 : 2);
  } else {
    message = `internal error: ${e instanceof Error ? e.message : String(e)}`;
    hint = debug ? undefined : 'run again with --debug and report the output';
  }
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
  process.exit(code === 'E_INTERNAL' ? 1 : (EXIT[code as ErrorCode] ?? 1));
}

function onSignal(sig: NodeJS.Signals): void {
  // Nothing half-written: remove temp files synchronously, then leave. Tags are only ever written
  // after their content, so stopping a push here leaves no tag on incomplete content.
  runCleanupsSync();
  process.stderr.write(`airgap: interrupted by ${sig}; nothing was left half-written\n`);
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
  .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(`airgap: ${s.replace(/^error: /, '')}`) });

for (const c of commands) {
  const cmd = program.command(c.name).description(c.description);
  for (const a of c.args ?? []) cmd.argument(a);
  for (const o of c.options) {
    const opt = new Option(o.flags, o.description);
    if (o.default !== undefined) opt.default(o.default);
    if (o.parse) opt.argParser(o.parse);
    cmd.addOption(opt);
  }
  cmd.addOption(new Option('--json', 'print a machine-readable result on stdout'));
  cmd.addOption(new Option('--debug', 'print stack traces and causes on error'));
  cmd.action(async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const opts = command.opts() as Record<string, unknown>;
    const positional = command.args;
    const flags: GlobalFlags = { json: Boolean(opts.json), debug: Boolean(opts.debug) };
    debug = flags.debug;
    jsonMode = flags.json;
    const r = await renderer(flags);
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
      // The result is out: leave once it is flushed, rather than wait ~0.1 s for idle keep-alive
      // connections and library timers to wind down (a re-push is otherwise mostly that wait).
      const code = result.exitCode ?? 0;
      process.stdout.write('', () => process.exit(code));
    } catch (e) {
      process.off('beforeExit', guard);
      r.stop();
      fail(e);
    }
  });
}

function readPasswordStdin(): string {
  try {
    return readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new AirgapError('E_USAGE', '--password-stdin: could not read standard input', { cause: e });
  }
}

program.parseAsync(process.argv).catch(fail);
