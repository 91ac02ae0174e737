#!/usr/bin/env python3
"""Keras 3 (JAX backend) reference for the headline model, for the Keras-equivalence test.

  keras_reference.py init  --out W.safetensors  [sizes]            Keras's own initial weights
  keras_reference.py train --data DIR --init W.safetensors --out W2.safetensors
                           [--optimizer adam|sgd|rmsprop --lr --momentum --nesterov]
                           [--batch-size B --epochs E] [sizes]

Weights are safetensors with Tandem's names (<layer>/<weight>, Keras layouts), read and
written here with numpy alone. Training is model.fit(shuffle=False) with binary
cross-entropy on both heads, loss weights main_output=1.0, aux_output=0.2, and
<output>.sample_weight.npy when present — what `tandem train --no-shuffle` does.
"""
import argparse, json, os, struct, sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def build(a):
    main_input = keras.Input(shape=(a.seq_len,), dtype="int32", name="main_input")
    x = keras.layers.Embedding(a.vocab, a.embed_dim, name="embedding")(main_input)
    lstm_out = keras.layers.LSTM(a.lstm_units, name="lstm")(x)
    aux_output = keras.layers.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    aux_input = keras.Input(shape=(a.aux_features,), name="aux_input")
    x = keras.layers.Concatenate(name="concatenate")([lstm_out, aux_input])
    for i in range(a.dense_layers):
        x = keras.layers.Dense(a.dense_units, activation="relu", name="dense" if i == 0 else f"dense_{i}")(x)
    main_output = keras.layers.Dense(1, activation="sigmoid", name="main_output")(x)
    return keras.Model(inputs=[main_input, aux_input], outputs=[main_output, aux_output])


WEIGHT_NAMES = {"Embedding": ["embeddings"], "LSTM": ["kernel", "recurrent_kernel", "bias"], "Dense": ["kernel", "bias"]}


def weights_of(model):
    out = {}
    for layer in model.layers:
        names = WEIGHT_NAMES.get(type(layer).__name__)
        if names:
            for n, v in zip(names, layer.get_weights()):
                out[f"{layer.name}/{n}"] = v
    return out


def load_into(model, tensors):
    for layer in model.layers:
        names = WEIGHT_NAMES.get(type(layer).__name__)
        if names:
            layer.set_weights([tensors[f"{layer.name}/{n}"] for n in names])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["init", "train"])
    p.add_argument("--out", required=True)
    p.add_argument("--data"); p.add_argument("--init")
    p.add_argument("--optimizer", default="adam"); p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float, default=0.0); p.add_argument("--nesterov", action="store_true")
    p.add_argument("--batch-size", type=int, default=32); p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    for flag, default in [("vocab", 10000), ("seq-len", 100), ("embed-dim", 512), ("lstm-units", 32),
                          ("aux-features", 5), ("dense-units", 64), ("dense-layers", 3)]:
        p.add_argument("--" + flag, type=int, default=default)
    a = p.parse_args()
    keras.utils.set_random_seed(a.seed)
    model = build(a)
    if a.mode == "init":
        write_safetensors(a.out, weights_of(model))
        return
    load_into(model, read_safetensors(a.init))
    lr = a.lr if a.lr is not None else (0.01 if a.optimizer == "sgd" else 0.001)
    optimizer = {"adam": lambda: keras.optimizers.Adam(learning_rate=lr),
                 "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate=lr),
                 "sgd": lambda: keras.optimizers.SGD(learning_rate=lr, momentum=a.momentum, nesterov=a.nesterov)}[a.optimizer]()
    # Lists in the model's output order (Keras 3 resolves per-output sample weights by position).
    model.compile(optimizer=optimizer, loss=["binary_crossentropy", "binary_crossentropy"], loss_weights=[1.0, 0.2])
    d = lambda name: np.load(os.path.join(a.data, name + ".npy"))
    x = [d("main_input").astype("int32"), d("aux_input").astype("float32")]
    y = [d("main_output").astype("float32"), d("aux_output").astype("float32")]
    weights = []
    for head, target in zip(["main_output", "aux_output"], y):
        path = os.path.join(a.data, head + ".sample_weight.npy")
        weights.append(np.load(path).astype("float32").reshape(-1) if os.path.exists(path) else np.ones(len(target), "float32"))
    history = model.fit(x, y, sample_weight=weights, batch_size=a.batch_size, epochs=a.epochs, shuffle=False, verbose=0)
    write_safetensors(a.out, weights_of(model))
    print(json.dumps({k: [float(v) for v in vs] for k, vs in history.history.items()}))


if __name__ == "__main__":
    sys.exit(main())
