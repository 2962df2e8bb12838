import net, { type AddressInfo } from 'node:net';

/**
 * Test helper: one port on 127.0.0.1 that speaks both TLS and plain HTTP, as a misconfigured
 * load balancer may: a connection that opens with a TLS handshake is relayed to `tlsHost`, any
 * other to `plainHost` (both `127.0.0.1:PORT`, e.g. two src/registry/testfront.ts fronts). So
 * `https://h:P` and `http://h:P` are the same host and port and differ only in scheme, which is
 * what a client that compares hosts instead of origins gets wrong.
 */
export interface SharedPort {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  stop(): Promise<void>;
}

const TLS_HANDSHAKE = 0x16;

export async function startSharedPort(tlsHost: string, plainHost: string): Promise<SharedPort> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    track(client);
    client.once('data', (first: Buffer) => {
      // Hold what follows until the relay is connected (pipe resumes it).
      client.pause();
      const [host, port] = (first[0] === TLS_HANDSHAKE ? tlsHost : plainHost).split(':');
      const up = net.connect(Number(port), host!, () => {
        up.write(first);
        up.pipe(client);
        client.pipe(up);
      });
      track(up);
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
      up.on('close', () => client.destroy());
      client.on('close', () => up.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
