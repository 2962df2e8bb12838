import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Credentials } from '../registry/credentials.js';
import { startRegistry, type TestRegistry } from './registry.js';
import { startWorld, type World, type WorldOptions } from './world.js';

/**
 * The stage most end-to-end tests play on: the vendor's side (the test world), a temp dir, and a
 * customer registry with one user.
 */
export interface Stage {
  world: World;
  dir: string;
  customer: TestRegistry;
  user: Credentials;
}

/**
 * Sets up a Stage into `ctx` (an AVA t.context). Each resource goes into `ctx` as soon as it
 * exists, so stopStage() releases it even when a later step throws.
 */
export async function startStage(ctx: Partial<Stage>, name: string,
  opts: { world?: WorldOptions; passwordPrefix?: string } = {}): Promise<void> {
  ctx.world = await startWorld(opts.world);
  ctx.dir = await mkdtemp(join(tmpdir(), `airgap-${name}-e2e-`));
  ctx.user = { username: 'deployer', password: (opts.passwordPrefix ?? 'pw-') + Math.random().toString(36).slice(2) };
  ctx.customer = await startRegistry({ users: [ctx.user] });
}

/** Stops whatever startStage() got as far as starting. */
export async function stopStage(ctx: Partial<Stage>): Promise<void> {
  await ctx.world?.stop();
  await ctx.customer?.stop();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
}
