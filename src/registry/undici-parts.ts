import type { Dispatcher } from 'undici';
import UndiciAgent from 'undici/lib/dispatcher/agent.js';
import undiciRequest from 'undici/lib/api/api-request.js';

/**
 * The two pieces of undici we use (a keep-alive Agent and the request API), loaded on their own:
 * undici's index also loads fetch, WebSocket, caches and mocks, which cost every command ~50 ms
 * of start-up for nothing (a re-push that moves no blob is mostly start-up).
 */
export const Agent = UndiciAgent;
export type Agent = InstanceType<typeof UndiciAgent>;

export function request(url: URL, opts: Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: Dispatcher }): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = opts;
  return undiciRequest.call(dispatcher, { ...rest, origin: url.origin, path: `${url.pathname}${url.search}` });
}
