#!/usr/bin/env bash
# The main job, from a fresh machine: install, build (release), generate data,
# train locally and under mpirun with 2 ranks, evaluate both, show the result; then
# continue the local run from its RUN/model.keras (the path a user's Keras archive takes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
swift build -c release --static-swift-stdlib
bin=.build/release/tandem
mkdir -p runs
$bin gen-data --out runs/data --samples 4096 --seed 1
$bin gen-data --out runs/val --samples 1024 --seed 2
echo "== training locally (1 process, no MPI)"
$bin train --data runs/data --val-data runs/val --out runs/local --optimizer adam --epochs 3 --batch-size 64
echo "== training under mpirun, 2 ranks, same global batch"
scripts/mpi-train.sh -np 2 -- --data runs/data --val-data runs/val --out runs/mpi2 --optimizer adam --epochs 3 --batch-size 64
echo "== evaluation on held-out data (local run, then 2-rank run)"
$bin evaluate --weights runs/local/weights.safetensors --data runs/val
$bin evaluate --weights runs/mpi2/weights.safetensors --data runs/val
echo "== metrics of the 2-rank run: runs/mpi2/metrics.jsonl"
cat runs/mpi2/metrics.jsonl
echo "== the trained model as a Keras archive (runs/local/model.keras loads with keras.saving.load_model)"
$bin summary --model runs/local/model.keras
echo "== one more epoch from that archive, its weights and Adam state, under mpirun with 2 ranks"
scripts/mpi-train.sh -np 2 -- --model runs/local/model.keras --data runs/data --val-data runs/val --out runs/continued --epochs 1 --batch-size 64
$bin evaluate --model runs/continued/model.keras --data runs/val
echo "== the 2-rank run's curves (and its TensorBoard events: tensorboard --logdir runs/mpi2/tensorboard)"
$bin plot runs/mpi2
