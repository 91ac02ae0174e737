#!/usr/bin/env bash
# Every test, from a fresh machine: installs what the build and the tests need (OpenMPI,
# OpenBLAS, HDF5, cairo; as root Slurm and munge for the Slurm test; Keras 3 with JAX and
# TensorBoard in a virtualenv for the Keras-equivalence and event-file tests), builds, and
# runs `swift test` (unit tests, gradient checks, CLI and bad-input tests, Keras
# equivalence, multi-rank tests under real mpirun, the namespace cluster, faults).
#
#   bash scripts/test.sh           everything (CI, the README)
#   bash scripts/test.sh --quick   the in-process tests only (TandemTests: layers, gradient
#                                  checks, optimizers, thread ranks), for the inner loop
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
bash scripts/install-deps.sh
if $quick; then
  swift build --build-tests
  swift test --skip-build --disable-swift-testing --filter '^TandemTests\.'
  exit 0
fi
if [ "$(id -u)" = 0 ]; then bash scripts/slurm/local-cluster.sh install; fi
venv=.build/keras-venv
if [ ! -x "$venv/bin/python" ] || ! KERAS_BACKEND=jax "$venv/bin/python" -c "import keras, jax, tensorboard, pandas, PIL, keras_hub" 2>/dev/null; then
  echo "test.sh: installing Keras 3, JAX, KerasHub, TensorBoard, pandas and Pillow into $venv (for the Keras-equivalence, event-file, DataFrame and image-file tests)"
  rm -rf "$venv"
  # KerasHub pinned (Tandem implements its layers from this version's configs) and without its
  # tensorflow-text requirement (TensorFlow itself, for tokenizers the tests never use).
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check keras jax tensorboard pandas pillow \
      absl-py packaging regex rich kagglehub sentencepiece tokenizers &&
      "$venv/bin/pip" install -q --disable-pip-version-check --no-deps keras-hub==0.32.0; }; then
    # Without Keras the equivalence tests would only skip: that is no verification, so stop.
    echo "test.sh: could not install Keras/JAX from PyPI into $venv; the Keras-equivalence tests need them" >&2
    exit 1
  fi
fi
export TANDEM_KERAS_PYTHON="$PWD/$venv/bin/python"
# JAX's compilation cache for the Keras worker (keras_models.py): new with every clone, shared by the suite's fits.
export TANDEM_JAX_CACHE="$PWD/.build/jax-cache"
swift build --build-tests
# Two halves of the suite at once, one per core: most of a Keras test's time is one Python thread
# compiling XLA programs, so the other core would idle. Each half is one test process (the shared
# Keras archives are built once in each half that uses them); MPI ranks yield when idle, as cores are
# shared. Lines are prefixed with their half; the run fails if either half does.
bundle="$(swift build --show-bin-path)/TandemPackageTests.xctest"
archives=TandemCLITests.KerasArchiveTests,TandemCLITests.PublishedModelTests,TandemCLITests.MultiTaskTests
archives+=,TandemCLITests.KerasFromPythonTests
rest=$("$bundle" --list-tests | sed -n 's|^\(Tandem[A-Za-z]*Tests\.[A-Za-z]*\)/.*|\1|p' | sort -u |
  grep -vxF -e "${archives//,/$'\n'}" | paste -sd, -)
export TANDEM_MPI_SHARED_CORES=1
logs=$(mktemp -d)
("$bundle" "$archives" 2>&1 | tee "$logs/archives" | sed -u 's/^/[archives] /') & first=$!
("$bundle" "$rest" 2>&1 | tee "$logs/rest" | sed -u 's/^/[rest] /') & second=$!
status=0
wait $first || status=1
wait $second || status=1
for half in archives rest; do echo "$half: $(grep -E 'Executed [0-9]+ tests' "$logs/$half" | tail -n 1 | sed 's/^[[:space:]]*//')"; done
rm -rf "$logs"
exit $status
