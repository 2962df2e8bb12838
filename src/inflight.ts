/**
 * How many requests go at once. `--concurrency` is "blobs copied at once"; that is the right
 * bound for big blobs, which fill a connection's bandwidth. Small things — manifests, probes,
 * blobs under SMALL_BLOB — use next to none of it: on a long link each one is a round trip of
 * waiting, so four of them go per slot, in a pool of their own (32 with the default 8; 4 with
 * `--concurrency 1`, so a user who lowers it for a fragile registry lowers this too).
 */

/** Below this size a blob is latency-bound: 1 MiB is 65 ms at 16 MB/s, against a 40 ms round trip. */
export const SMALL_BLOB = 1024 * 1024;

export function smallRequestsInFlight(concurrency: number): number {
  return 4 * Math.max(1, Math.floor(concurrency));
}
