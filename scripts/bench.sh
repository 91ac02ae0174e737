#!/usr/bin/env bash
# The standard benchmark matrix of the headline model: 1 and 2 ranks, 32 and
# 256 samples per rank, Adam and SGD. Prints one table (medians of each run's
# timed intervals) with the 2-rank scaling against 1 rank at the same per-rank
# batch. Extra arguments go to every `tandem bench` (e.g. --intervals 7).
#
#   bash scripts/bench.sh            # builds in release first
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh >/dev/null
swift build -c release --static-swift-stdlib >/dev/null
bin=.build/release/tandem
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for optimizer in adam sgd; do
  for batch in 32 256; do
    OPENBLAS_NUM_THREADS=1 $bin bench --json --optimizer $optimizer --batch-size $batch "$@" >> "$results"
    TANDEM_BIN=$bin scripts/mpi-train.sh -np 2 --timeout 600 -- bench --json --optimizer $optimizer --batch-size $batch "$@" >> "$results"
  done
done
# The cost of reproducible mode (micro-batch 8): Adam, 1 and 2 ranks.
for batch in 32 256; do
  OPENBLAS_NUM_THREADS=1 $bin bench --json --optimizer adam --batch-size $batch --reproducible --micro-batch 8 "$@" >> "$results"
  TANDEM_BIN=$bin scripts/mpi-train.sh -np 2 --timeout 600 -- bench --json --optimizer adam --batch-size $batch --reproducible --micro-batch 8 "$@" >> "$results"
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
one = {(r["optimizer"], r["batch_per_rank"], r["micro_batch"]): r["samples_per_second"] for r in rows if r["ranks"] == 1}
print(f"{'ranks':>5} {'batch/rank':>10} {'opt':>9} {'samples/s':>10} {'vs 1 rank':>9} {'fwd ms':>7} {'bwd ms':>7} {'xchg ms':>7} {'opt ms':>7} {'GFLOP/s':>8} {'of peak':>7} {'RSS MB':>7} {'bound MB':>8}")
for r in rows:
    scale = r["samples_per_second"] / one[(r["optimizer"], r["batch_per_rank"], r["micro_batch"])]
    name = r["optimizer"] + (f" r{r['micro_batch']}" if r["micro_batch"] else "")
    print(f"{r['ranks']:>5} {r['batch_per_rank']:>10} {name:>9} {r['samples_per_second']:>10.0f} {scale:>8.2f}x "
          f"{r['forward_ms']:>7.1f} {r['backward_ms']:>7.1f} {r['exchange_ms']:>7.1f} {r['optimizer_ms']:>7.1f} "
          f"{r['gflops']:>8.1f} {100 * r['gflops'] / r['sgemm_peak_gflops']:>6.0f}% {r['peak_rss_mb']:>7.0f} {r['memory_bound_mb']:>8.0f}")
print("bound = 1.3 × (parameters + gradients + optimizer slots) + activations, per rank; 'adam r8' = --reproducible --micro-batch 8")
PY
