#!/usr/bin/env python3
"""The model families of the speed matrix (scripts/bench.sh), built as a user would build them,
and Keras 3 on JAX's own training throughput on each, for the side-by-side table.

  bench_families.py build --out DIR                 DIR/<family>.keras for every family below
  bench_families.py keras --family F --batch-size B [--intervals 5]
                                                     model.fit on random data, one thread: prints one JSON
                                                     line with samples/s of each timed interval and their median

Every family has two or more heads trained by one Adam on one weighted total loss. The Keras
side measures the same archive Tandem trains (load_model of the file `build` wrote), on data of
the same shapes and kinds, with XLA held to one thread (run it under `taskset -c 0` as well).
"""
import argparse, json, os, sys, time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
import numpy as np  # noqa: E402
import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_reference import build as build_headline  # noqa: E402  (the headline, built once for every script)

L = keras.layers


def headline():
    """The headline preset, as scripts/keras_reference.py builds it: Embedding 10000×512 → LSTM 32, aux head,
    concatenate aux_input(5) → 3 × Dense 64 relu → main head; loss weights 1.0 / 0.2."""
    sizes = argparse.Namespace(vocab=10000, seq_len=100, embed_dim=512, lstm_units=32, aux_features=5,
                               dense_units=64, dense_layers=3)
    m = build_headline(sizes)
    m.compile(optimizer="adam", loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
              loss_weights={"main_output": 1.0, "aux_output": 0.2})
    return m


def topic_and_flag(tokens, trunk, flag_weight):
    """The text families' two heads on `trunk`: a 5-class softmax `topic` and a binary `flag`, compiled."""
    topic = L.Dense(5, activation="softmax", name="topic")(trunk)
    flag = L.Dense(1, activation="sigmoid", name="flag")(trunk)
    m = keras.Model(tokens, [topic, flag])
    m.compile(optimizer="adam", loss={"topic": "sparse_categorical_crossentropy", "flag": "binary_crossentropy"},
              loss_weights={"topic": 1.0, "flag": flag_weight})
    return m


def gru_classifier():
    """A GRU text classifier: Embedding 20000×128 → GRU 64 → a 5-class softmax head and a binary head."""
    tokens = keras.Input(shape=(100,), dtype="int32", name="tokens")
    return topic_and_flag(tokens, L.GRU(64, name="gru")(L.Embedding(20000, 128, name="embedding")(tokens)), 0.5)


def conv_bilstm():
    """A tagger-style trunk: Embedding 10000×64 → Conv1D 128 (same) → Bidirectional LSTM 32 (return
    sequences) → GlobalMaxPooling1D → a 5-class head and a binary head."""
    tokens = keras.Input(shape=(100,), dtype="int32", name="tokens")
    x = L.Embedding(10000, 64, name="embedding")(tokens)
    x = L.Conv1D(128, 3, padding="same", activation="relu", name="conv")(x)
    x = L.Bidirectional(L.LSTM(32, return_sequences=True), name="bi_lstm")(x)
    return topic_and_flag(tokens, L.GlobalMaxPooling1D(name="max_over_time")(x), 0.3)


def tabular():
    """A tabular multi-task MLP: 200 features → Dense 512 → BatchNormalization → Dense 256 → Dropout 0.2 →
    a binary head, a 10-class head and a regression head."""
    features = keras.Input(shape=(200,), name="features")
    x = L.Dense(512, activation="relu", name="dense")(features)
    x = L.BatchNormalization(name="batch_normalization")(x)
    x = L.Dense(256, activation="relu", name="dense_1")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    churn = L.Dense(1, activation="sigmoid", name="churn")(x)
    segment = L.Dense(10, activation="softmax", name="segment")(x)
    spend = L.Dense(1, name="spend")(x)
    m = keras.Model(features, [churn, segment, spend])
    m.compile(optimizer="adam", loss={"churn": "binary_crossentropy", "segment": "sparse_categorical_crossentropy", "spend": "mse"},
              loss_weights={"churn": 1.0, "segment": 0.5, "spend": 0.2})
    return m


def stacked_lstm():
    """A stacked LSTM: Embedding 5000×64 → LSTM 64 (return sequences) → LSTM 64 → two heads."""
    tokens = keras.Input(shape=(100,), dtype="int32", name="tokens")
    x = L.Embedding(5000, 64, name="embedding")(tokens)
    x = L.LSTM(64, return_sequences=True, name="lstm")(x)
    return topic_and_flag(tokens, L.LSTM(64, name="lstm_1")(x), 0.2)


def age_and_kind(image, features):
    """The image families' two heads on pooled features: an `age` regression (MSE) and a 10-class `kind`
    (sparse categorical cross-entropy), weights 1.0 / 0.5, compiled."""
    pooled = L.GlobalAveragePooling2D(name="pool")(features)
    age = L.Dense(1, name="age")(pooled)
    kind = L.Dense(10, activation="softmax", name="kind")(pooled)
    m = keras.Model(image, [age, kind])
    m.compile(optimizer="adam", loss={"age": "mse", "kind": "sparse_categorical_crossentropy"},
              loss_weights={"age": 1.0, "kind": 0.5})
    return m


def resnet_small(size):
    """A small ResNet: Conv2D 32 (3×3) → BN → ReLU, then three residual stages (32, 64 and 128 filters; the
    last two stride 2 with a 1×1 projection), each two 3×3 Conv2D + BN, then the two image heads."""
    image = keras.Input(shape=(size, size, 3), name="image")
    x = L.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(image)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    for stage, (filters, stride) in enumerate([(32, 1), (64, 2), (128, 2)]):
        skip = x if stride == 1 else L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"proj{stage}")(x)
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"conv{stage}a")(x)
        y = L.ReLU(name=f"relu{stage}a")(L.BatchNormalization(name=f"bn{stage}a")(y))
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{stage}b")(y)
        y = L.BatchNormalization(name=f"bn{stage}b")(y)
        x = L.ReLU(name=f"relu{stage}")(L.Add(name=f"add{stage}")([skip, y]))
    return age_and_kind(image, x)


def mobilenet_v2(size):
    """keras.applications.MobileNetV2 (alpha 0.35, weights=None, no top) as a nested model, then the two
    image heads."""
    image = keras.Input(shape=(size, size, 3), name="image")
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3), alpha=0.35)
    return age_and_kind(image, base(image))


def transformer():
    """A 4-layer transformer encoder (#33): Embedding 10000×128 over 128 tokens → 4 × [MultiHeadAttention (4 heads
    of 32) → residual → LayerNormalization → Dense 512 relu → Dense 128 → residual → LayerNormalization] → the
    mean over tokens → a 5-class head and a binary head."""
    tokens = keras.Input(shape=(128,), dtype="int32", name="tokens")
    x = L.Embedding(10000, 128, name="embedding")(tokens)
    for i in range(4):
        a = L.MultiHeadAttention(num_heads=4, key_dim=32, name=f"attention_{i}")(x, x)
        x = L.LayerNormalization(name=f"attention_norm_{i}")(L.Add(name=f"attention_residual_{i}")([x, a]))
        f = L.Dense(128, name=f"feedforward_out_{i}")(L.Dense(512, activation="relu", name=f"feedforward_in_{i}")(x))
        x = L.LayerNormalization(name=f"feedforward_norm_{i}")(L.Add(name=f"feedforward_residual_{i}")([x, f]))
    return topic_and_flag(tokens, L.GlobalAveragePooling1D(name="mean_over_tokens")(x), 0.3)


FAMILIES = {"headline": headline, "gru_classifier": gru_classifier, "conv_bilstm": conv_bilstm,
            "tabular": tabular, "stacked_lstm": stacked_lstm,
            "cnn_resnet_32": lambda: resnet_small(32), "cnn_resnet_64": lambda: resnet_small(64),
            "cnn_mobilenetv2_32": lambda: mobilenet_v2(32), "cnn_mobilenetv2_64": lambda: mobilenet_v2(64),
            "transformer": transformer}


def random_data(model, n, rng):
    """Inputs and targets of the model's shapes: token ids below the table's size, normal floats,
    0/1 for a binary head, class ids for a sparse categorical one, normal values for a regression one."""
    vocab = min(layer.input_dim for layer in model.layers if isinstance(layer, L.Embedding)) \
        if any(isinstance(layer, L.Embedding) for layer in model.layers) else 0
    xs = []
    for t in model.inputs:
        shape = (n,) + tuple(t.shape[1:])
        xs.append(rng.integers(0, vocab, size=shape).astype("int32") if "int" in str(t.dtype)
                  else rng.normal(size=shape).astype("float32"))
    losses = model.loss if isinstance(model.loss, dict) else dict(zip(model.output_names, model.loss))
    ys = []
    for name, t in zip(model.output_names, model.outputs):
        width = t.shape[-1]
        loss = losses[name]
        if loss == "binary_crossentropy":
            ys.append(rng.integers(0, 2, size=(n, width)).astype("float32"))
        elif loss == "sparse_categorical_crossentropy":
            ys.append(rng.integers(0, width, size=(n, 1)).astype("float32"))
        else:
            ys.append(rng.normal(size=(n, width)).astype("float32"))
    return xs, ys


def keras_speed(path, batch, intervals, seconds):
    model = keras.saving.load_model(path)
    rng = np.random.default_rng(1)
    probe = 4 * batch
    x, y = random_data(model, probe, rng)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # compiles; not timed
    started = time.time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    rate = probe / (time.time() - started)
    # Each timed interval is one epoch of about `seconds`, at least 4 steps.
    n = batch * max(4, int(rate * seconds / batch))
    x, y = random_data(model, n, rng)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    rates = []
    for _ in range(intervals):
        started = time.time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        rates.append(n / (time.time() - started))
    return {"samples_per_second": sorted(rates)[len(rates) // 2], "intervals": rates, "steps_per_interval": n // batch,
            "keras": keras.__version__, "backend": keras.backend.backend()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["build", "keras"])
    p.add_argument("--out"); p.add_argument("--family"); p.add_argument("--model")
    p.add_argument("--batch-size", type=int, default=32); p.add_argument("--intervals", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5, help="keras: the length of one timed interval")
    a = p.parse_args()
    keras.utils.set_random_seed(1)
    if a.mode == "build":
        os.makedirs(a.out, exist_ok=True)
        for name, make in FAMILIES.items():
            make().save(os.path.join(a.out, name + ".keras"))
        return
    result = keras_speed(a.model, a.batch_size, a.intervals, a.seconds)
    result.update({"family": a.family, "batch_per_rank": a.batch_size})
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
