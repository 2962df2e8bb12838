import { execFileSync } from 'node:child_process';
import { registerCleanup } from '../cleanup.js';

/**
 * Upload sessions open right now, so that an interrupted push gives them back: on SIGINT or
 * SIGTERM the CLI runs the process's cleanups synchronously and exits (cleanup.ts), which leaves
 * no turn of the event loop for a request. The DELETEs are therefore sent by a short-lived child
 * process, all at once, waited for at most CANCEL_WAIT_MS: best effort, as the session would
 * expire on its own, but a registry counts open sessions against quotas (Harbor, ECR) and keeps
 * their partial data until then.
 */

export interface OpenUpload {
  /** The session's URL (its Location). */
  url: string;
  /** Authorization for it, when the registry wants one: handed to the child on its stdin, never in argv or env. */
  authorization?: string;
  /** For https: the CAs the registry is trusted with (undefined: Node's own), and whether to verify. */
  ca?: string[];
  verify: boolean;
  /** The proxy the session's origin is reached through (HTTPS_PROXY…), as the upload itself was; its credentials too go on stdin only. */
  proxy?: string;
}

/** The longest an interrupt waits for the registry to take the DELETEs. */
export const CANCEL_WAIT_MS = 3000;

const open = new Map<number, OpenUpload>();
let next = 0;
let unregister: (() => void) | undefined;

/** Tracks a session until the returned function is called (the upload completed or was cancelled). */
export function trackUpload(u: OpenUpload): () => void {
  const id = next++;
  open.set(id, u);
  unregister ??= registerCleanup(cancelOpenUploadsSync);
  return () => {
    open.delete(id);
    if (open.size === 0 && unregister) {
      unregister();
      unregister = undefined;
    }
  };
}

/** The sessions still open, for tests. */
export function openUploads(): OpenUpload[] {
  return [...open.values()];
}

// Run by `node -e` in the child: every DELETE at once, then exit. Plain node:http(s), no dependency.
// Through a proxy as the upload went: CONNECT for https (TLS inside the tunnel), an absolute URI
// for plain http, with the proxy's credentials from its URL.
const CHILD = `
const http = require('node:http');
const https = require('node:https');
const tls = require('node:tls');
const net = require('node:net');
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const list = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  let left = list.length;
  if (left === 0) process.exit(0);
  const done = () => { if (--left === 0) process.exit(0); };
  for (const u of list) { try { cancel(u, done); } catch { done(); } }
});
function cancel(u, done) {
  const url = new URL(u.url);
  const headers = u.authorization ? { authorization: u.authorization } : {};
  const bare = url.hostname.replace(/^\\[|\\]$/g, '');
  const secure = { ...(u.ca ? { ca: u.ca } : {}), rejectUnauthorized: u.verify, ...(net.isIP(bare) ? {} : { servername: bare }) };
  const answer = (res) => { res.resume(); res.on('end', done); res.on('error', done); };
  if (!u.proxy) {
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'DELETE', headers, ...secure }, answer);
    req.on('error', done);
    req.end();
    return;
  }
  const p = new URL(u.proxy);
  const via = { host: p.hostname.replace(/^\\[|\\]$/g, ''), port: p.port || (p.protocol === 'https:' ? 443 : 80) };
  const mod = p.protocol === 'https:' ? https : http;
  const auth = p.username ? { 'proxy-authorization': 'Basic ' + Buffer.from(decodeURIComponent(p.username) + ':' + decodeURIComponent(p.password)).toString('base64') } : {};
  if (url.protocol === 'http:') {
    const req = mod.request({ ...via, method: 'DELETE', path: url.href, headers: { ...headers, ...auth, host: url.host } }, answer);
    req.on('error', done);
    req.end();
    return;
  }
  const target = url.hostname + ':' + (url.port || 443);
  const tunnel = mod.request({ ...via, method: 'CONNECT', path: target, headers: { host: target, ...auth } });
  tunnel.on('connect', (res, socket) => {
    if (res.statusCode !== 200) { socket.destroy(); done(); return; }
    const req = https.request(url, { method: 'DELETE', headers, ...secure, createConnection: () => tls.connect({ socket, ...secure }) }, answer);
    req.on('error', done);
    req.end();
  });
  tunnel.on('error', done);
  tunnel.end();
}
`;

function cancelOpenUploadsSync(): void {
  unregister = undefined;
  const list = [...open.values()];
  open.clear();
  if (list.length === 0) return;
  try {
    execFileSync(process.execPath, ['-e', CHILD], { input: JSON.stringify(list), timeout: CANCEL_WAIT_MS, stdio: ['pipe', 'ignore', 'ignore'] });
  } catch {
    // Best effort: a session not given back expires on its own.
  }
}
