#!/usr/bin/env bash
# Every test: installs what the build needs (OpenMPI, OpenBLAS, HDF5; Keras 3 with JAX
# and TensorBoard in a virtualenv for the Keras-equivalence and event-file tests), builds,
# and runs `swift test`
# (unit tests, gradient checks, CLI and bad-input tests, Keras equivalence,
# multi-rank tests under real mpirun, the namespace cluster, faults).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
venv=.build/keras-venv
if [ ! -x "$venv/bin/python" ] || ! KERAS_BACKEND=jax "$venv/bin/python" -c "import keras, jax, tensorboard" 2>/dev/null; then
  echo "test.sh: installing Keras 3, JAX and TensorBoard into $venv (for the Keras-equivalence and event-file tests)"
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check keras jax tensorboard; }; then
    # Without Keras the equivalence tests would only skip: that is no verification, so stop.
    echo "test.sh: could not install Keras/JAX from PyPI into $venv; the Keras-equivalence tests need them" >&2
    exit 1
  fi
fi
export TANDEM_KERAS_PYTHON="$PWD/$venv/bin/python"
swift build --build-tests
swift test --disable-swift-testing
