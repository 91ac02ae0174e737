"""Keras 3 training throughput of the headline model, for comparison with `tandem bench`.

    taskset -c 0 .build/keras-venv/bin/python scripts/keras_speed.py 32     # batch 32, one core

The same model as scripts/keras_reference.py (Embedding → LSTM → two sigmoid heads,
loss weights 1.0 / 0.2), Adam, `model.fit` on 4096 random samples; XLA is limited
to one thread. Prints samples/s of three epochs after a compiling warm-up and their median.
(.build/keras-venv is made by scripts/test.sh.)
"""
import argparse, os, sys, time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
import numpy as np
import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_reference import build

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
sizes = argparse.Namespace(vocab=10000, seq_len=100, embed_dim=512, lstm_units=32, aux_features=5,
                           dense_units=64, dense_layers=3)
n = 4096
rng = np.random.default_rng(1)
x = [rng.integers(0, sizes.vocab, size=(n, sizes.seq_len)).astype("int32"),
     rng.normal(size=(n, sizes.aux_features)).astype("float32")]
y = [rng.integers(0, 2, size=(n, 1)).astype("float32"), rng.integers(0, 2, size=(n, 1)).astype("float32")]
model = build(sizes)
model.compile(optimizer=keras.optimizers.Adam(), loss=["binary_crossentropy", "binary_crossentropy"],
              loss_weights=[1.0, 0.2])
model.fit(x, y, batch_size=batch, epochs=1, verbose=0, steps_per_epoch=3)  # compile
rates = []
for _ in range(3):
    started = time.time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    rates.append(n / (time.time() - started))
rates.sort()
print(f"keras {keras.__version__} ({keras.backend.backend()}), batch {batch}: samples/s "
      f"{', '.join(f'{r:.0f}' for r in rates)}; median {rates[1]:.0f}")
