/**
 * The link emulator on its own: node --import=tsx scripts/link.ts --upstream 127.0.0.1:5000
 *   [--delay-ms 40] [--rate-mb 16] [--port 0]
 * Prints "listening 127.0.0.1:PORT" once it serves; stops on SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import { startLink } from '../src/testing/link.js';

const { values } = parseArgs({
  options: {
    upstream: { type: 'string' },
    'delay-ms': { type: 'string', default: '40' },
    'rate-mb': { type: 'string', default: '16' },
    port: { type: 'string', default: '0' },
  },
});
if (!values.upstream) {
  process.stderr.write('usage: link.ts --upstream HOST:PORT [--delay-ms 40] [--rate-mb 16] [--port 0]\n');
  process.exit(2);
}
const link = await startLink({
  upstream: values.upstream,
  delayMs: Number(values['delay-ms']),
  bytesPerSecond: Number(values['rate-mb']) * 1e6,
  port: Number(values.port),
});
process.stdout.write(`listening ${link.host}\n`);
const stop = (): void => {
  const s = link.stats();
  process.stderr.write(`link: ${s.requests} requests, ${s.connections} connections, ${(s.bytesDown / 1e6).toFixed(1)} MB down, ${(s.bytesUp / 1e6).toFixed(1)} MB up\n`);
  void link.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
