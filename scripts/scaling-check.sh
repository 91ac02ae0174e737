#!/usr/bin/env bash
# Checks `tandem bench --scaling`'s model against measurement: the network-namespace cluster
# (scripts/netns-cluster.sh) with each host's link limited by a tc token bucket, 2 and 3 hosts
# of one rank each, predicted samples/s against `tandem bench` measured across them.
#
#   bash scripts/scaling-check.sh MODEL.keras BATCH GBIT [GBIT ...]    (as root)
#
# The prediction takes one rank's step time measured here with every core busy (as the hosts' ranks
# are; the compute tandem bench --scaling measures is one pinned rank's), the collectives a step makes
# (tandem bench --scaling), and the link's α and β measured at 2 hosts from two probe models' gradient exchange
# (one of a few small sums, one of ~1 MB): the namespace links deliver less than the token bucket's
# rate when the TCP stack competes with the ranks for the cores. This machine has fewer cores than
# 3 hosts need: there the ranks share them, so the compute term is multiplied by ranks / cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
model="$1" batch="$2"; shift 2
bin="${TANDEM_BIN:-.build/release/tandem}"
[ -x "$bin" ] || { echo "scaling-check: $bin not found; run 'swift build -c release' first (or set TANDEM_BIN)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "scaling-check: must run as root (the namespace cluster)" >&2; exit 2; }
export TANDEM_BIN="$bin"
cores=$(nproc)
tiny=(--vocab 50 --seq-len 4 --embed-dim 4 --lstm-units 2 --aux-features 2 --dense-units 2 --dense-layers 1)
results=$(mktemp -d)
trap 'rm -rf "$results"; bash scripts/netns-cluster.sh down >/dev/null 2>&1 || true' EXIT
bash scripts/netns-cluster.sh down >/dev/null 2>&1 || true

large=(--vocab 50 --seq-len 4 --embed-dim 4 --lstm-units 2 --aux-features 2 --dense-units 350 --dense-layers 3)
for gbit in "$@"; do
  # Three runs of each, alternated; the table takes each one's median (the namespace links are noisy).
  # The link's α and β come from the gradient exchange of two probe models at 2 hosts: one whose gradient
  # is a few small sums (α), one with ~1 MB of dense gradient (β).
  for run in 1 2 3; do
    for hosts in 2 3; do
      echo "scaling-check: $hosts hosts at $gbit Gbit/s, run $run" >&2
      bash scripts/netns-cluster.sh run "$hosts" --gbit "$gbit" -- bench --json --model "$model" \
        --batch-size "$batch" 2>/dev/null | tail -1 > "$results/measured-$gbit-$hosts-$run.json"
    done
    for probe in small large; do
      if [ $probe = small ]; then sizes=("${tiny[@]}"); else sizes=("${large[@]}"); fi
      bash scripts/netns-cluster.sh run 2 --gbit "$gbit" -- bench --json --batch-size 4 "${sizes[@]}" --steps 100 \
        2>/dev/null | tail -1 > "$results/probe-$probe-$gbit-$run.json"
    done
  done
done
OPENBLAS_NUM_THREADS=1 taskset -c 0 "$bin" bench --json --scaling --model "$model" --batch-size "$batch" \
  > "$results/scaling.json"
# One rank's compute as it runs here with every core busy (2 ranks on this machine, shared memory): the
# cores' shared caches and memory slow each rank, which one pinned rank does not show.
for run in 1 2 3; do
  bash scripts/mpi-train.sh -np "$cores" -- bench --json --model "$model" --batch-size "$batch" 2>/dev/null | tail -1 \
    > "$results/local-$run.json"
done
"$bin" bench --json --scaling --batch-size 4 "${tiny[@]}" > "$results/scaling-small.json"
"$bin" bench --json --scaling --batch-size 4 "${large[@]}" > "$results/scaling-large.json"

python3 - "$results" "$cores" "$batch" "$@" <<'PY'
import json, sys
results, cores, batch, rates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def load(name):
    return json.load(open(f"{results}/{name}.json"))
def median(name, key):
    values = sorted(load(f"{name}-{run}")[key] for run in (1, 2, 3))
    return values[1]
def at(scaling, ranks):
    return next(p for p in scaling["predictions"] if p["ranks"] == ranks)
scaling = load("scaling")
# Per rank, with every core busy: the local run's step less its (shared-memory) exchange.
local = sorted((cores * batch / load(f"local-{run}")["samples_per_second"] - load(f"local-{run}")["exchange_ms"] / 1000)
               for run in (1, 2, 3))[1]
compute = local
print(f"one rank: {scaling['compute_ms']:.2f} ms a step at batch {batch} alone, {1000 * compute:.2f} ms with {cores} "
      f"ranks busy; {scaling['collectives']} collectives a step, "
      f"{scaling['gradient_bytes'] / 1e3:.0f} KB of gradient; {cores} cores here")
print(f"{'Gbit/s':>6} {'hosts':>5} {'α µs':>6} {'β Gbit/s':>8} {'compute ms':>10} {'exchange ms':>11} "
      f"{'predicted':>10} {'measured':>10} {'error':>7}")
for gbit in rates:
    # E = latencies·α + bytes·β for each probe's gradient exchange at 2 hosts: two equations, two unknowns.
    (l1, b1, e1), (l2, b2, e2) = [
        (at(load(f"scaling-{p}"), 2)["gradient_latencies"], at(load(f"scaling-{p}"), 2)["gradient_link_bytes"],
         median(f"probe-{p}-{gbit}", "exchange_ms") / 1000) for p in ("small", "large")]
    det = l1 * b2 - l2 * b1
    alpha, beta = (e1 * b2 - e2 * b1) / det, (l1 * e2 - l2 * e1) / det
    for hosts in (2, 3):
        measured = median(f"measured-{gbit}-{hosts}", "samples_per_second")
        p = at(scaling, hosts)
        exchange = (p["gradient_latencies"] + p["other_latencies"]) * alpha \
            + (p["gradient_link_bytes"] + p["other_link_bytes"]) * beta
        # More hosts than cores: the ranks share them, so each step's compute stretches by hosts / cores.
        step_compute = compute * max(1, hosts / cores)
        predicted = hosts * batch / (step_compute + exchange)
        print(f"{gbit:>6} {hosts:>5} {1e6 * alpha:>6.0f} {8e-9 / beta:>8.2f} {1000 * step_compute:>10.2f} "
              f"{1000 * exchange:>11.2f} {predicted:>10.0f} {measured:>10.0f} "
              f"{100 * (predicted - measured) / measured:>6.1f}%")
PY
