#!/usr/bin/env bash
# Launch `tandem` under mpirun with the flags this environment needs.
#
#   scripts/mpi-train.sh -np 4 [--hostfile hostfiles/localhost] [--timeout 600] -- <tandem train args>
#   scripts/mpi-train.sh -np 2 -- evaluate --weights run/weights.safetensors --data data
#
# Adds: --allow-run-as-root when root; --oversubscribe and mpi_yield_when_idle
# when ranks exceed cores (a blocked rank would otherwise busy-poll) or when
# TANDEM_MPI_SHARED_CORES is set (other jobs share the cores; no binding then);
# one BLAS thread per rank; mpirun --timeout so a hang ends as exit 110.
# The binary is $TANDEM_BIN, else .build/release/tandem. The first word after
# `--` may name a subcommand (train, evaluate, predict); train is the default.
set -euo pipefail

np=""; hostfile=""; timeout="${TANDEM_MPI_TIMEOUT:-3600}"; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -np|-n) np="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --mca) extra+=(--mca "$2" "$3"); shift 3 ;;
    --) shift; break ;;
    *) echo "mpi-train.sh: unknown option '$1' (usage: -np N [--hostfile F] [--timeout S] -- <tandem args>)" >&2; exit 2 ;;
  esac
done
[ -n "$np" ] || { echo "mpi-train.sh: -np N is required" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${TANDEM_BIN:-$here/.build/release/tandem}"
[ -x "$bin" ] || { echo "mpi-train.sh: $bin not found; run 'swift build -c release --static-swift-stdlib' first (or set TANDEM_BIN)" >&2; exit 2; }

case "${1:-}" in
  train|evaluate|predict|bench|gen-data) ;;
  *) set -- train "$@" ;;
esac

args=(-np "$np" --timeout "$timeout" -x OPENBLAS_NUM_THREADS=1)
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
if [ -z "$hostfile" ] && { [ "$np" -gt "$(nproc)" ] || [ -n "${TANDEM_MPI_SHARED_CORES:-}" ]; }; then
  args+=(--oversubscribe --mca mpi_yield_when_idle 1)
  # Cores other jobs use too (scripts/test.sh runs two halves of the suite at once): bound to none.
  [ -n "${TANDEM_MPI_SHARED_CORES:-}" ] && args+=(--bind-to none)
fi
exec mpirun "${args[@]}" "${extra[@]}" "$bin" "$@"
