#!/usr/bin/env bash
# The standard benchmark matrix of the headline model: 1 and 2 ranks, 32 and
# 256 samples per rank, Adam and SGD, plus reproducible mode (Adam, micro-batch
# 8). Prints one table: samples/s of each run of the matrix (each the median of
# that run's timed intervals), their median, the 2-rank scaling against 1 rank
# at the same per-rank batch (from the medians), and the step split, GFLOP/s and
# memory of the median run. Extra arguments go to every `tandem bench`.
#
#   bash scripts/bench-headline.sh          # one run of the matrix (about a minute)
#   bash scripts/bench-headline.sh --runs 3 # three runs, interleaved
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=1
if [ "${1:-}" = "--runs" ]; then runs="$2"; shift 2; fi
bash scripts/install-deps.sh >/dev/null
swift build -c release --static-swift-stdlib >/dev/null
bin=.build/release/tandem
results=$(mktemp)
trap 'rm -f "$results"' EXIT
one() { OPENBLAS_NUM_THREADS=1 $bin bench --json "$@" >> "$results"; }
two() { TANDEM_BIN=$bin scripts/mpi-train.sh -np 2 --timeout 600 -- bench --json "$@" >> "$results"; }
for run in $(seq "$runs"); do
  for optimizer in adam sgd; do
    for batch in 32 256; do
      one --optimizer $optimizer --batch-size $batch "$@"
      two --optimizer $optimizer --batch-size $batch "$@"
    done
  done
  for batch in 32 256; do
    one --optimizer adam --batch-size $batch --reproducible --micro-batch 8 "$@"
    two --optimizer adam --batch-size $batch --reproducible --micro-batch 8 "$@"
  done
done
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
configs = {}
for r in rows:
    configs.setdefault((r["optimizer"], r["micro_batch"], r["batch_per_rank"], r["ranks"]), []).append(r)
def median_run(runs):
    ordered = sorted(runs, key=lambda r: r["samples_per_second"])
    return ordered[len(ordered) // 2]
print(f"{'ranks':>5} {'batch/rank':>10} {'opt':>8} {'samples/s (runs)':>22} {'median':>7} {'vs 1 rank':>9} "
      f"{'fwd':>5} {'bwd':>5} {'xchg':>5} {'opt':>5} {'GFLOP/s':>7} {'of peak':>7} {'RSS MB':>6} {'bound':>5}")
for (optimizer, micro, batch, ranks), runs in configs.items():
    m = median_run(runs)
    base = median_run(configs[(optimizer, micro, batch, 1)])["samples_per_second"]
    name = optimizer + (f" r{micro}" if micro else "")
    samples = ", ".join(f"{r['samples_per_second']:.0f}" for r in runs)
    print(f"{ranks:>5} {batch:>10} {name:>8} {samples:>22} {m['samples_per_second']:>7.0f} {m['samples_per_second'] / base:>8.2f}x "
          f"{m['forward_ms']:>5.1f} {m['backward_ms']:>5.1f} {m['exchange_ms']:>5.1f} {m['optimizer_ms']:>5.1f} "
          f"{m['gflops']:>7.1f} {100 * m['gflops'] / m['sgemm_peak_gflops']:>6.0f}% {max(r['peak_rss_mb'] for r in runs):>6.0f} {m['memory_bound_mb']:>5.0f}")
print("ms per step; RSS = the largest peak of the runs; bound = 1.3 × (parameters + gradients + optimizer slots) + activations,")
print("per rank; 'adam r8' = --reproducible --micro-batch 8; BLAS: " + rows[0].get("blas", "?"))
PY
