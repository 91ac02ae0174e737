#!/usr/bin/env bash
# The speed matrix: every model family of scripts/bench_families.py (built as
# .keras archives by Keras, as users would) × batch 32 and 256 per rank × 1 and
# 2 ranks, Adam, and Keras 3 on JAX training the same archives in the same run
# (a pinned venv this script installs). Each configuration is one `tandem bench`
# or one Keras fit, one thread per process; the 1-rank and Keras runs are pinned
# to core 0. Prints one table: Tandem and Keras-JAX samples/s (the median of each
# run's timed intervals; with --runs N, the median over the N runs), their ratio,
# the 2-rank scaling at the same per-rank batch, peak RSS against its bound, and
# the achieved dense-equivalent GFLOP/s against the sgemm peak measured in the
# same process. Extra arguments go to every `tandem bench`. With --peers keras,torch
# every family is also trained by PyTorch 2 on CPU (scripts/bench_torch.py: the same
# architectures in torch.nn, one thread, fused Adam, channels_last for images), in a venv
# of its own installed on that request only (~200 MB CPU wheel); the table then shows
# Tandem against each peer and against the faster one.
#
#   bash scripts/bench.sh                          # one run of the whole matrix (~8 minutes)
#   bash scripts/bench.sh --runs 3                 # three runs, interleaved: the README's table
#   bash scripts/bench.sh --families gru_classifier,tabular --batches 32
#   bash scripts/bench.sh --families cnn --peers keras,torch   # the image families against both peers
#   bash scripts/bench.sh --table .build/bench-results/<time>.jsonl   # a kept run's table again
#   bash scripts/bench.sh --check --peers keras,torch   # exits 1 when a row is behind the faster peer
#                                                   # (a guard to run before a release; not part of CI)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=1; families="headline gru_classifier conv_bilstm tabular stacked_lstm cnn transformer"; batches="32 256"; table=""; check=0
peers="keras"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --families) families="${2//,/ }"; shift 2 ;;
    --check) check=1; shift ;;
    --peers) peers="${2//,/ }"; shift 2 ;;
    --batches) batches="${2//,/ }"; shift 2 ;;
    --table) table="$2"; shift 2 ;;  # print the table of a kept results file, measure nothing
    *) break ;;
  esac
done
# "cnn" names the four image families.
expanded=""
for family in $families; do
  [ "$family" = cnn ] && family="cnn_resnet_32 cnn_resnet_64 cnn_mobilenetv2_32 cnn_mobilenetv2_64"
  expanded="$expanded $family"
done
families="${expanded# }"
for peer in $peers; do
  case "$peer" in keras|torch) ;; *) echo "bench.sh: --peers takes keras and torch, not '$peer'" >&2; exit 2 ;; esac
done
if [ -z "$table" ]; then
bash scripts/install-deps.sh >/dev/null
swift build -c release --static-swift-stdlib >/dev/null
bin=.build/release/tandem

# Keras 3 on JAX, pinned, in a venv of its own (the versions of the table).
venv=.build/bench-venv
pins=(keras==3.15.1 jax==0.10.2 jaxlib==0.10.2 numpy==2.4.6 h5py==3.16.0 ml_dtypes==0.6.0 optree==0.20.0)
if ! "$venv/bin/pip" freeze 2>/dev/null | grep -qx "keras==3.15.1"; then
  echo "bench.sh: installing ${pins[*]} into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
fi
py=(env KERAS_BACKEND=jax "$venv/bin/python" scripts/bench_families.py)

# PyTorch 2 on CPU, pinned, only when asked for (the CPU wheel from PyTorch's index).
torch_venv=.build/bench-torch-venv
if [[ " $peers " == *" torch "* ]] && ! "$torch_venv/bin/pip" freeze 2>/dev/null | grep -qx "torch==2.13.0+cpu"; then
  echo "bench.sh: installing torch==2.13.0+cpu into $torch_venv" >&2
  rm -rf "$torch_venv"
  python3 -m venv "$torch_venv"
  # A wheel pip can already see (a --find-links folder, a mirror) first; else PyTorch's CPU index.
  "$torch_venv/bin/pip" install -q --disable-pip-version-check numpy==2.4.6 torch==2.13.0+cpu 2>/dev/null ||
    "$torch_venv/bin/pip" install -q --disable-pip-version-check numpy==2.4.6 torch==2.13.0+cpu \
      --extra-index-url https://download.pytorch.org/whl/cpu
fi

models=.build/bench-families
"${py[@]}" build --out "$models" 2>/dev/null

# Every configuration's JSON is kept, so a table can be printed again (--table FILE).
mkdir -p .build/bench-results
results=.build/bench-results/$(date -u +%Y%m%dT%H%M%SZ).jsonl
echo "bench.sh: results in $results" >&2
tag() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); r.update(family=sys.argv[2], side=sys.argv[3]); print(json.dumps(r))" "$1" "$2" "$3"; }
for run in $(seq "$runs"); do
  for family in $families; do
    for batch in $batches; do
      echo "bench.sh: run $run/$runs: $family, batch $batch" >&2
      k=$(taskset -c 0 "${py[@]}" keras --family "$family" --model "$models/$family.keras" --batch-size "$batch" 2>/dev/null | tail -1)
      tag "$k" "$family" keras >> "$results"
      if [[ " $peers " == *" torch "* ]]; then
        p=$(taskset -c 0 "$torch_venv/bin/python" scripts/bench_torch.py --family "$family" --batch-size "$batch" | tail -1)
        tag "$p" "$family" torch >> "$results"
      fi
      t=$(OPENBLAS_NUM_THREADS=1 taskset -c 0 $bin bench --json --model "$models/$family.keras" --batch-size "$batch" "$@" | tail -1)
      tag "$t" "$family" tandem >> "$results"
      t=$(TANDEM_BIN=$bin scripts/mpi-train.sh -np 2 --timeout 900 -- bench --json --model "$models/$family.keras" --batch-size "$batch" "$@" | tail -1)
      tag "$t" "$family" tandem >> "$results"
    done
  done
done
else
  [ -s "$table" ] || { echo "bench.sh: --table $table: no such results file (they are kept in .build/bench-results/)" >&2; exit 2; }
  results="$table"
fi
python3 - "$results" "$families" "$check" <<'PY'
import json, statistics, sys
check, behind = sys.argv[3] == "1", []
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def runs(family, side, batch, ranks=1):
    return [r for r in rows if r["family"] == family and r["side"] == side and r["batch_per_rank"] == batch
            and r.get("ranks", 1) == ranks]
def median(xs):
    return statistics.median(xs) if xs else float("nan")
def listed(rs):
    return ", ".join("%.0f" % r["samples_per_second"] for r in rs)
def rate(rs):
    return median([r["samples_per_second"] for r in rs])
print(f"{'family':<18} {'batch':>5} {'Tandem 1r':>9} {'Keras-JAX':>9} {'ratio':>6} {'PyTorch':>7} {'ratio':>6} {'faster':>6} {'Tandem 2r':>9} {'2r/1r':>6} "
      f"{'RSS MB':>6} {'bound':>5} {'fixed':>5} {'data':>5} {'GFLOP/s':>7} {'of peak':>7}  {'Tandem 1r runs':<18} {'Keras runs':<18} {'PyTorch runs':<18}")
batches = sorted({r["batch_per_rank"] for r in rows})
for family in sys.argv[2].split():
    for batch in batches:
        one, two, keras = runs(family, "tandem", batch), runs(family, "tandem", batch, 2), runs(family, "keras", batch)
        torch = runs(family, "torch", batch)
        if not one:
            continue
        t1, t2, k, p = rate(one), rate(two), rate(keras), rate(torch)
        versus_torch = f"{p:>7.0f} {t1 / p:>5.2f}x" if torch else f"{'-':>7} {'-':>6}"
        versus_torch += f" {t1 / max(k, p if torch else 0):>5.2f}x"
        if t1 < max(k, p if torch else 0):
            behind.append(f"{family} batch {batch}: {t1 / max(k, p if torch else 0):.2f}x the faster peer")
        # The median 1-rank run's figures; RSS the largest of any run, 1 or 2 ranks.
        m = sorted(one, key=lambda r: r["samples_per_second"])[len(one) // 2]
        rss = max(r["peak_rss_mb"] for r in one + two)
        bound = max(r["memory_bound_mb"] for r in one + two)
        fixed = max(r.get("fixed_runtime_mb", 0) for r in one + two)
        data = max(r.get("data_mb", 0) for r in one + two)
        print(f"{family:<18} {batch:>5} {t1:>9.0f} {k:>9.0f} {t1 / k:>5.2f}x {versus_torch} {t2:>9.0f} {t2 / t1:>5.2f}x "
              f"{rss:>6.0f} {bound:>5.0f} {fixed:>5.0f} {data:>5.1f} {m['gflops']:>7.1f} {100 * m['gflops'] / m['sgemm_peak_gflops']:>6.0f}%  "
              f"{listed(one):<18} {listed(keras):<18} {listed(torch):<18}")
print("samples/s, Adam, one BLAS/XLA thread per process; RSS = peak while training, the largest of any run; ratio = Tandem 1 rank / Keras-JAX (target ≥ 2.0×); 2r = 2 ranks × batch,")
print("total samples/s (target ≥ 1.8× 1 rank); bound = 1.3 × (parameters + gradients + slots) + activations + fixed, per rank,")
print("fixed = the runtime resident before any model exists (Swift, MPI, BLAS and its buffers), measured in each run;")
print("data = the generated dataset's mapped files: the rows read stay resident, in the RSS but in no term of the bound;")
print("GFLOP/s = dense-equivalent per rank against the single-thread sgemm peak measured in the same run; matrix products: "
      + rows[-1].get("gemm", rows[-1].get("blas", "?")))
kernels = sorted({r["convolutions"] for r in rows if r.get("convolutions", "none") != "none"})
if kernels:
    print("convolutions: " + "; ".join(kernels))
peer = next((r for r in rows if r["side"] == "torch"), None)
if peer:
    print(f"PyTorch {peer['torch']} on CPU, one thread, fused Adam, channels_last for the image families (oneDNN: {peer['mkldnn']}); "
          "ratio = Tandem 1 rank / PyTorch; faster = Tandem 1 rank / the faster peer")
if check and behind:
    print("bench.sh --check: rows behind the faster peer: " + "; ".join(behind), file=sys.stderr)
    sys.exit(1)
if check:
    print("bench.sh --check: every row at or ahead of the faster peer")
PY
