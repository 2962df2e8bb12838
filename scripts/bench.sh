#!/usr/bin/env bash
# npm run bench: airgap vs the skopeo pipeline, side by side on loopback registries behind an
# emulated long fat link. Prints a table; exits non-zero when a target is missed.
# Sizes and link: BENCH_IMAGES BENCH_BASE1_MB BENCH_BASE2_MB BENCH_APP_MIN_MB BENCH_APP_MAX_MB
# BENCH_BIG_MB BENCH_HUGE_MB (0 skips) BENCH_DELAY_MS BENCH_RATE_MB BENCH_CONCURRENCY BENCH_RSS_LIMIT_MB;
# the many-image set: BENCH_MANY_* and BENCH_LIMITED_MEMORY_MIB (see scripts/bench.ts);
# BENCH_SETS picks the sets (default big,many,charts; "kots" adds the .airgap push set):
# the charts set BENCH_CHARTS, the kots set BENCH_KOTS_IMAGES BENCH_KOTS_MB BENCH_KOTS_RUNS;
# method: BENCH_SETTLE_S (quiet time after the sync before each timed step, default 5),
# BENCH_REPUSH_RUNS (re-push runs, median taken, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec node --import=tsx scripts/bench.ts "$@"
