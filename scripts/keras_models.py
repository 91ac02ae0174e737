#!/usr/bin/env python3
"""Keras 3 (JAX) side of the bring-your-own-model tests: builds and saves multi-output
models as a user would, and runs Keras's own fit / predict / evaluate on archives.

  keras_models.py build    --out DIR                   DIR/<name>.keras for every model below (opt_<name> for
                           each of OPTIMIZERS), and its weights as DIR/<name>.safetensors
  keras_models.py bench-models --out DIR              DIR/gru_text.keras and DIR/conv_bilstm.keras at the headline's scale,
                           for `tandem bench --model`
  keras_models.py fit      --model M --data D --out OUT.keras [--batch-size B --epochs E]
                           load_model(M).fit(shuffle=False) on D's .npy files, saved as OUT.keras and its
                           weights as OUT.keras.safetensors; prints the history as JSON (--save-epochs: also
                           OUT.keras.epoch<N>.keras after each epoch)
  keras_models.py weights  --model M --out W.safetensors   the archive's weights, <layer>/<weight>
  keras_models.py predict  --model M --data D --out DIR     one <output>.npy per output
  keras_models.py evaluate --model M --data D               evaluate(return_dict=True) as JSON
  keras_models.py inspect  --model M --data D --out DIR     load_model(M): DIR/weights.safetensors, DIR/<output>.npy
                           (predict), and evaluate(return_dict=True) printed as JSON
  keras_models.py bad      --model M --out DIR              broken and hostile variants of archive M, for the
                           error tests (see BAD below)
  keras_models.py serve                                any of the above, one JSON line each from standard input,
                           in one process (the tests' worker; see serve())

Data files are named after the model's inputs and outputs (what `tandem gen-data --model`
writes); <output>.sample_weight.npy is used when present.
"""
import argparse, json, os, struct, sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

if os.environ.get("TANDEM_JAX_CACHE"):
    # XLA's compiled programs on disk (scripts/test.sh sets a folder in .build/): most of a small model's fit is
    # compiling its step, and the suite fits, loads and evaluates the same models many times. Keyed by the
    # program, the compiler's options and JAX's version, so a hit runs the very program a miss compiles.
    import jax  # noqa: E402

    jax.config.update("jax_compilation_cache_dir", os.environ["TANDEM_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import keras  # noqa: E402
from keras_reference import write_safetensors  # noqa: E402  (the same safetensors writer)

L = keras.layers


def headline():
    """The project's headline model, small: its table is 4U wide, so Tandem takes the compact path."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="main_input")
    x = L.Embedding(50, 16, name="embedding")(tokens)
    trunk = L.LSTM(4, name="lstm")(x)
    aux = L.Dense(1, activation="sigmoid", name="aux_output")(trunk)
    extra = keras.Input(shape=(3,), name="aux_input")
    x = L.Concatenate(name="concatenate")([trunk, extra])
    x = L.Dense(8, activation="relu", name="dense")(x)
    x = L.Dense(8, activation="relu", name="dense_1")(x)
    main = L.Dense(1, activation="sigmoid", name="main_output")(x)
    m = keras.Model([tokens, extra], [main, aux])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
              loss_weights={"main_output": 1.0, "aux_output": 0.2}, metrics={"main_output": ["accuracy"], "aux_output": ["accuracy"]})
    return m


def dict_outputs():
    """The functional-API guide's ticket model as it is written there: inputs and outputs given as dicts
    (Keras saves them as dicts, outputs in sorted key order), losses from logits as loss objects by output
    name, loss weights and metrics by name, RMSprop (Keras 3.15 refuses a flat metrics list for dict
    outputs). Lengths fixed."""
    title = keras.Input(shape=(6,), name="title")  # float32, as the guide writes them: Embedding casts the ids
    body = keras.Input(shape=(9,), name="body")
    tags = keras.Input(shape=(4,), name="tags")
    title_features = L.LSTM(5)(L.Embedding(40, 8)(title))
    body_features = L.LSTM(3)(L.Embedding(40, 6)(body))
    x = L.concatenate([title_features, body_features, tags])
    priority = L.Dense(1, name="priority")(x)
    department = L.Dense(3, name="department")(x)
    m = keras.Model(inputs={"title": title, "body": body, "tags": tags},
                    outputs={"priority": priority, "department": department})
    m.compile(optimizer=keras.optimizers.RMSprop(0.01),
              loss={"priority": keras.losses.BinaryCrossentropy(from_logits=True),
                    "department": keras.losses.CategoricalCrossentropy(from_logits=True)},
              loss_weights={"priority": 1.0, "department": 0.2},
              metrics={"priority": ["accuracy"], "department": ["accuracy"]})
    return m


def functional_guide():
    """Exactly as published: the "Models with multiple inputs and outputs" example of Keras's functional
    API guide (keras.io/guides/functional_api/, keras-team/keras-io guides/functional_api.py), the ticket
    ranker — variable-length title and body token sequences given as float32 (keras.Input's default) and
    a tags vector → priority and department — with the guide's dict outputs and its dict compile."""
    num_tags = 12  # Number of unique issue tags
    num_words = 10000  # Size of vocabulary obtained when preprocessing text data
    num_departments = 4  # Number of departments for predictions

    title_input = keras.Input(shape=(None,), name="title")  # Variable-length sequence of ints
    body_input = keras.Input(shape=(None,), name="body")  # Variable-length sequence of ints
    tags_input = keras.Input(shape=(num_tags,), name="tags")  # Binary vectors of size `num_tags`

    # Embed each word in the title into a 64-dimensional vector
    title_features = L.Embedding(num_words, 64)(title_input)
    # Embed each word in the text into a 64-dimensional vector
    body_features = L.Embedding(num_words, 64)(body_input)

    # Reduce sequence of embedded words in the title into a single 128-dimensional vector
    title_features = L.LSTM(128)(title_features)
    # Reduce sequence of embedded words in the body into a single 32-dimensional vector
    body_features = L.LSTM(32)(body_features)

    # Merge all available features into a single large vector via concatenation
    x = L.concatenate([title_features, body_features, tags_input])

    # Stick a logistic regression for priority prediction on top of the features
    priority_pred = L.Dense(1, name="priority")(x)
    # Stick a department classifier on top of the features
    department_pred = L.Dense(num_departments, name="department")(x)

    # Instantiate an end-to-end model predicting both priority and department
    model = keras.Model(
        inputs=[title_input, body_input, tags_input],
        outputs={"priority": priority_pred, "department": department_pred},
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={
            "priority": keras.losses.BinaryCrossentropy(from_logits=True),
            "department": keras.losses.CategoricalCrossentropy(from_logits=True),
        },
        loss_weights={"priority": 1.0, "department": 0.2},
    )
    return model


def activation_layers():
    """The activation layers at the arguments Tandem supports: ReLU (plain and max_value 6), LeakyReLU
    (negative_slope 0.2), ELU, Softmax over the last axis of a sequence, and Identity, on two heads."""
    x_in = keras.Input(shape=(6,), name="features")
    seq_in = keras.Input(shape=(4, 3), name="sequence")
    x = L.ReLU(name="relu")(L.Dense(8, name="d1")(x_in))
    x = L.LeakyReLU(negative_slope=0.2, name="leaky")(L.Dense(8, name="d2")(x))
    x = L.ELU(name="elu")(L.Dense(8, name="d3")(x))
    x = L.ReLU(max_value=6.0, name="relu6")(L.Dense(8, name="d4")(x))
    x = L.Identity(name="identity")(x)
    s = L.Softmax(name="softmax")(L.Dense(5, name="d5")(seq_in))
    s = L.GlobalAveragePooling1D(name="pool")(s)
    score = L.Dense(1, name="score")(L.Concatenate(name="cat")([x, s]))
    label = L.Dense(3, name="label")(L.Concatenate(name="cat2")([x, s]))
    label = L.Softmax(name="label_softmax")(label)
    m = keras.Model([x_in, seq_in], [score, label])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "categorical_crossentropy"], loss_weights=[1.0, 0.5])
    return m


def sequential():
    m = keras.Sequential([keras.Input(shape=(6,), name="features"), L.Dense(10, activation="relu", name="hidden"),
                          L.Dense(4, activation="softmax", name="probabilities")])
    m.compile(optimizer=keras.optimizers.RMSprop(0.005), loss="categorical_crossentropy", metrics=["accuracy"])
    return m


def three_heads():
    """Three heads of different losses, loss weights as a list, an L2 kernel penalty, SGD with Nesterov."""
    x_in = keras.Input(shape=(9,), name="features")
    x = L.Dense(12, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01), name="trunk")(x_in)
    flag = L.Dense(1, activation="sigmoid", name="flag")(x)
    kind = L.Dense(3, activation="softmax", name="kind")(x)
    score = L.Dense(1, name="score")(x)
    m = keras.Model(x_in, [flag, kind, score])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
              loss=["binary_crossentropy", "sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5, 0.25],
              metrics={"flag": ["accuracy"], "kind": ["accuracy"]})
    return m


def shared():
    """One Embedding and one LSTM called on two inputs (shared weights), an L1L2 penalty."""
    a = keras.Input(shape=(6,), dtype="int32", name="left")
    b = keras.Input(shape=(6,), dtype="int32", name="right")
    emb, lstm = L.Embedding(30, 8, name="shared_embedding"), L.LSTM(5, name="shared_lstm")
    x = L.Concatenate(name="pair")([lstm(emb(a)), lstm(emb(b))])
    same = L.Dense(1, activation="sigmoid", name="same")(x)
    topic = L.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L1L2(l1=0.001, l2=0.01), name="topic")(x)
    m = keras.Model([a, b], [same, topic])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss={"same": "binary_crossentropy", "topic": "sparse_categorical_crossentropy"},
              loss_weights={"same": 1.0, "topic": 0.5}, metrics={"same": ["accuracy"], "topic": ["accuracy"]})
    return m


def unseen():
    """No test names its parts: a float sequence input, stacked LSTMs (return_sequences), a logits head
    (from_logits=True on a linear Dense without bias), a one-hot categorical head; RMSprop."""
    seq = keras.Input(shape=(5, 3), name="signal")
    side = keras.Input(shape=(4,), name="context")
    x = L.LSTM(6, return_sequences=True, name="encoder")(seq)
    x = L.LSTM(4, name="summary")(x)
    logit = L.Dense(1, use_bias=False, name="alarm")(L.Concatenate(name="joined")([x, side]))
    mode = L.Dense(3, activation="softmax", name="mode")(L.Dense(7, activation="tanh", name="mixer")(side))
    m = keras.Model([seq, side], [logit, mode])
    m.compile(optimizer=keras.optimizers.RMSprop(0.01),
              loss={"alarm": keras.losses.BinaryCrossentropy(from_logits=True), "mode": "categorical_crossentropy"},
              loss_weights={"alarm": 0.7, "mode": 1.3}, metrics={"mode": ["accuracy"]})
    return m


def bad_archives(source, out):
    """Variants of `source` that Tandem must refuse with one clear message (written without Keras)."""
    import h5py, io, zipfile
    os.makedirs(out, exist_ok=True)
    z = zipfile.ZipFile(source)
    config, weights = json.loads(z.read("config.json")), z.read("model.weights.h5")

    def archive(name, members):
        with zipfile.ZipFile(os.path.join(out, name + ".keras"), "w") as f:
            for n, data in members.items():
                f.writestr(n, data)

    def edited_h5(edit):
        buf = io.BytesIO(weights)
        with h5py.File(buf, "r+") as f:
            edit(f)
        return buf.getvalue()

    def with_layer(name, change):
        c = json.loads(json.dumps(config))
        for layer in c["config"]["layers"]:
            if layer["name"] == name:
                change(layer)
        return json.dumps(c)

    open(os.path.join(out, "not_a_zip.keras"), "wb").write(b"this is not a zip archive\n" * 20)
    archive("no_config", {"model.weights.h5": weights})
    archive("no_weights", {"config.json": json.dumps(config)})
    archive("corrupt_weights", {"config.json": json.dumps(config), "model.weights.h5": weights[:200] + b"\0" * 300})
    archive("bad_json", {"config.json": "{\"class_name\": \"Functional\", ", "model.weights.h5": weights})
    archive("missing_weight", {"config.json": json.dumps(config), "model.weights.h5": edited_h5(lambda f: f["layers/lstm/cell/vars"].__delitem__("1"))})

    def misshape(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = np.zeros((3, 3), "float32")
    archive("misshapen_weight", {"config.json": json.dumps(config), "model.weights.h5": edited_h5(misshape)})

    def soft(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.SoftLink("/layers/dense_1/vars/1")
    archive("soft_link", {"config.json": json.dumps(config), "model.weights.h5": edited_h5(soft)})

    def external(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.ExternalLink("/etc/passwd.h5", "/x")
    archive("external_link", {"config.json": json.dumps(config), "model.weights.h5": edited_h5(external)})

    def external_storage(f):
        shape = f["layers/dense/vars/1"].shape
        del f["layers/dense/vars/1"]
        f.create_dataset("layers/dense/vars/1", shape=shape, dtype="float32", external=[("/etc/hostname", 0, 4 * int(np.prod(shape)))])
    archive("external_storage", {"config.json": json.dumps(config), "model.weights.h5": edited_h5(external_storage)})
    archive("dotdot_member", {"config.json": json.dumps(config), "model.weights.h5": weights, "../../escape.txt": "x"})
    archive("absolute_member", {"config.json": json.dumps(config), "model.weights.h5": weights, "/tmp/escape.txt": "x"})

    def to_conv_lstm(layer):
        layer["class_name"] = "ConvLSTM1D"
    archive("unsupported_layer", {"config.json": with_layer("lstm", to_conv_lstm), "model.weights.h5": weights})

    def stateful(layer):
        layer["config"]["stateful"] = True
    archive("unsupported_argument", {"config.json": with_layer("lstm", stateful), "model.weights.h5": weights})

    def lam(layer):
        layer["class_name"] = "Lambda"
        layer["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "print('pwned')"}}
    archive("lambda_layer", {"config.json": with_layer("dense", lam), "model.weights.h5": weights})

    def custom(layer):
        layer["module"] = "my_package.layers"
        layer["registered_name"] = "MyDense"
    archive("custom_object", {"config.json": with_layer("dense", custom), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["loss"]["main_output"] = "ctc"
    archive("unsupported_loss", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["loss"]["main_output"] = {
        "module": "keras.losses", "class_name": "Dice", "config": {"name": "dice", "reduction": "sum_over_batch_size", "axis": 0}, "registered_name": None}
    archive("dice_on_the_batch_axis", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["loss"]["main_output"] = {
        "module": "keras.losses", "class_name": "MeanSquaredError", "config": {"name": "mse", "reduction": None}, "registered_name": None}
    archive("reduction_none", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["optimizer"] = {"module": "keras.optimizers", "class_name": "MultiOptimizer", "config": {"learning_rate": 0.01}, "registered_name": None}
    archive("unsupported_optimizer", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["optimizer"]["config"]["learning_rate"] = -0.01
    archive("negative_learning_rate", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["optimizer"]["config"]["learning_rate"] = {
        "module": "keras.optimizers.schedules", "class_name": "WarmupHold", "config": {"initial_learning_rate": 0.01}, "registered_name": None}
    archive("unknown_schedule", {"config.json": json.dumps(c), "model.weights.h5": weights})
    c = json.loads(json.dumps(config)); c["compile_config"]["loss"]["main_output"] = {
        "module": "keras.losses", "class_name": "BinaryCrossentropy", "config": {"name": "bce", "ignore_class": 0}, "registered_name": None}
    archive("ignore_class_on_bce", {"config.json": json.dumps(c), "model.weights.h5": weights})
    # A member that claims far more bytes than the archive could expand to (a zip bomb's header).
    members = {"config.json": json.dumps(config), "model.weights.h5": weights}
    archive("huge_member", members)
    path = os.path.join(out, "huge_member.keras")
    blob = bytearray(open(path, "rb").read())
    i = blob.find(b"PK\x01\x02")  # central directory entries
    while i >= 0:
        name_len = struct.unpack("<H", blob[i + 28:i + 30])[0]
        if blob[i + 46:i + 46 + name_len] == b"model.weights.h5":
            blob[i + 24:i + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
        i = blob.find(b"PK\x01\x02", i + 4)
    open(path, "wb").write(bytes(blob))


def merges():
    """Every merge layer, the Activation layer and every closed-form string activation."""
    f, g = keras.Input(shape=(6,), name="f"), keras.Input(shape=(6,), name="g")
    a = L.Dense(8, activation="gelu", name="a")(f)
    b = L.Dense(8, activation="selu", name="b")(g)
    c = L.Dense(8, activation="swish", name="c")(f)
    parts = [L.Activation("softplus", name="soft")(L.Add(name="add")([a, b, c])), L.Subtract(name="sub")([a, b]),
             L.Activation("elu", name="elu")(L.Multiply(name="mul")([b, c])), L.Average(name="avg")([a, b, c]),
             L.Maximum(name="max")([a, c]), L.Minimum(name="min")([b, c])]
    x = L.Concatenate(name="all")(parts)
    flag = L.Dense(1, activation="sigmoid", name="flag")(L.Dense(6, activation="leaky_relu", name="lr")(x))
    kind = L.Dense(3, activation="softmax", name="kind")(L.Dense(5, activation="mish", name="mi")(x))
    level = L.Dense(2, activation="softsign", name="level")(L.Dense(4, activation="relu6", name="r6")(x))
    rest = L.Dense(3, activation="hard_sigmoid", name="hs")(x)
    rest = L.Dense(3, activation="exponential", name="ex")(L.Dense(3, activation="tanh", name="th")(rest))
    spread = L.Activation("log_softmax", name="spread")(L.Dense(3, activation="sigmoid", name="sg")(rest))
    m = keras.Model([f, g], [flag, kind, level, spread])
    m.compile(optimizer=keras.optimizers.Adam(0.01),
              loss={"flag": "binary_crossentropy", "kind": "categorical_crossentropy", "level": "mse", "spread": "mse"},
              loss_weights={"flag": 1.0, "kind": 0.5, "level": 0.8, "spread": 0.3}, metrics={"flag": ["accuracy"], "kind": ["accuracy"]})
    return m


def sequence_core():
    """Dense and TimeDistributed(Dense, LayerNormalization, Activation) on sequences, LayerNormalization, pooling (valid, same, strided), global
    pooling, RepeatVector, Concatenate on the time axis, Flatten, Reshape, Dropout / SpatialDropout1D at rate 0."""
    seq = keras.Input(shape=(8, 3), name="series")
    ctx = keras.Input(shape=(6,), name="context")
    x = L.Dense(5, activation="tanh", name="per_step")(seq)
    x = L.SpatialDropout1D(0.0, name="spatial_drop")(L.LayerNormalization(name="norm")(x))
    a = L.MaxPooling1D(2, name="max_pool")(x)
    b = L.AveragePooling1D(3, strides=2, padding="same", name="avg_pool")(x)
    r = L.RepeatVector(2, name="repeat")(L.Dense(5, name="context_proj")(ctx))
    t = L.Concatenate(axis=1, name="time_join")([a, b, r])
    t = L.TimeDistributed(L.Dense(4, activation="relu"), name="per_step_2")(t)
    t = L.TimeDistributed(L.Activation("elu"), name="per_step_act")(L.TimeDistributed(L.LayerNormalization(), name="per_step_norm")(t))
    flat = L.Flatten(name="flat")(L.MaxPooling1D(2, strides=1, padding="same", name="max_pool_same")(t))
    h = L.Concatenate(name="joined")([L.GlobalAveragePooling1D(name="gap")(t), L.GlobalMaxPooling1D(name="gmp")(t),
                                      L.Dropout(0.0, name="drop")(flat)])
    h = L.LayerNormalization(center=False, epsilon=0.01, name="norm_2")(h)
    flag = L.Dense(1, activation="sigmoid", name="flag")(h)
    grid = L.GlobalAveragePooling1D(name="grid_pool")(L.Reshape((4, 12), name="grid")(L.Dense(48, name="widen")(h)))
    kind = L.Dense(3, activation="softmax", name="kind")(grid)
    m = keras.Model([seq, ctx], [flag, kind])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss={"flag": "binary_crossentropy", "kind": "sparse_categorical_crossentropy"},
              loss_weights={"flag": 1.0, "kind": 0.5}, metrics={"flag": ["accuracy"], "kind": ["accuracy"]})
    return m


def recurrent():
    """GRU (reset_after true and false), SimpleRNN, go_backwards, stacking, Bidirectional (every merge mode), and
    the mask of Embedding(mask_zero=True) read by GRUs, an LSTM, a Bidirectional and GlobalAveragePooling1D."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    signal = keras.Input(shape=(6, 2), name="signal")
    e = L.Embedding(8, 6, mask_zero=True, name="embedding")(tokens)
    x = L.GRU(5, return_sequences=True, name="gru")(e)
    x = L.GRU(4, reset_after=False, go_backwards=True, name="gru_classic")(x)
    y = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="sum", name="bi_lstm")(e)
    y = L.GlobalAveragePooling1D(name="masked_mean")(y)
    z = L.LSTM(3, go_backwards=True, name="lstm_back")(e)
    s = L.SimpleRNN(4, activation="relu", return_sequences=True, go_backwards=True, name="simple")(signal)
    s1 = L.Bidirectional(L.GRU(3), name="bi_gru")(s)
    s2 = L.Bidirectional(L.SimpleRNN(2, return_sequences=True), merge_mode="mul", name="bi_simple")(s)
    s2 = L.Bidirectional(L.GRU(2, reset_after=False, use_bias=False), merge_mode="ave", name="bi_ave")(s2)
    h = L.Concatenate(name="joined")([x, y, z, s1, s2])
    flag = L.Dense(1, activation="sigmoid", name="flag")(h)
    kind = L.Dense(3, activation="softmax", name="kind")(L.SimpleRNN(4, name="simple_2")(s))
    m = keras.Model([tokens, signal], [flag, kind])
    m.compile(optimizer=keras.optimizers.Adam(0.02), loss={"flag": "binary_crossentropy", "kind": "sparse_categorical_crossentropy"},
              loss_weights={"flag": 1.0, "kind": 0.4}, metrics={"flag": ["accuracy"], "kind": ["accuracy"]})
    return m


def conv_bilstm():
    """A Conv1D trunk (same, causal with dilation, strided valid) under a bidirectional LSTM, two heads."""
    tokens = keras.Input(shape=(12,), dtype="int32", name="tokens")
    x = L.Embedding(30, 8, name="embedding")(tokens)
    x = L.Conv1D(6, 3, padding="same", activation="relu", name="conv_same")(x)
    x = L.Conv1D(5, 2, dilation_rate=2, padding="causal", activation="tanh", name="conv_causal")(x)
    x = L.Conv1D(4, 3, strides=2, name="conv_strided")(x)
    x = L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi_lstm")(x)
    topic = L.Dense(3, activation="softmax", name="topic")(L.GlobalMaxPooling1D(name="max_over_time")(x))
    flag = L.Dense(1, activation="sigmoid", name="flag")(L.LSTM(3, name="summary")(x))
    m = keras.Model(tokens, [topic, flag])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy", "binary_crossentropy"],
              loss_weights=[1.0, 0.3], metrics={"topic": ["accuracy"], "flag": ["accuracy"]})
    return m


def sequential_text():
    """A Sequential text model: the mask of Embedding(mask_zero=True) flows implicitly through Dropout to a
    Bidirectional GRU and on to a second GRU (input dropout 0)."""
    m = keras.Sequential([keras.Input(shape=(9,), dtype="int32", name="words"), L.Embedding(6, 5, mask_zero=True, name="embedding"),
                          L.Dropout(0.0, name="drop"), L.Bidirectional(L.GRU(4, return_sequences=True), name="bi_gru"),
                          L.GRU(3, dropout=0.0, name="gru"), L.Dense(2, activation="softmax", name="label")])
    m.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def normalized():
    """BatchNormalization on features and on a sequence (statistics over the global batch, moving statistics
    saved), Conv1D into it, a second BatchNormalization without centre."""
    x_in = keras.Input(shape=(10,), name="features")
    seq = keras.Input(shape=(5, 3), name="series")
    x = L.Activation("relu", name="relu")(L.BatchNormalization(name="bn")(L.Dense(8, use_bias=False, name="dense")(x_in)))
    s = L.BatchNormalization(momentum=0.9, epsilon=0.01, center=False, name="bn_seq")(L.Conv1D(4, 2, use_bias=False, name="conv")(seq))
    s = L.GlobalAveragePooling1D(name="pool")(s)
    h = L.Concatenate(name="joined")([x, s])
    score = L.Dense(1, name="score")(h)
    kind = L.Dense(3, activation="softmax", name="kind")(L.Dense(6, activation="tanh", name="mix")(h))
    m = keras.Model([x_in, seq], [score, kind])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss={"score": "mse", "kind": "categorical_crossentropy"},
              loss_weights={"score": 0.5, "kind": 1.0}, metrics={"kind": ["accuracy"]})
    return m


def dropout():
    """Dropout that is on: Dropout, SpatialDropout1D, an RNN's input and recurrent dropout (GRU, LSTM, SimpleRNN).
    Its masks are Tandem's own (not Keras's), so the tests check them against other rank counts, not Keras."""
    tokens = keras.Input(shape=(8,), dtype="int32", name="tokens")
    x = L.SpatialDropout1D(0.2, name="spatial")(L.Embedding(20, 6, name="embedding")(tokens))
    x = L.GRU(5, dropout=0.2, recurrent_dropout=0.3, return_sequences=True, name="gru")(x)
    a = L.LSTM(3, recurrent_dropout=0.25, name="lstm")(x)
    b = L.SimpleRNN(3, dropout=0.1, recurrent_dropout=0.1, name="simple")(x)
    h = L.Dropout(0.4, name="drop")(L.Concatenate(name="joined")([a, b]))
    flag = L.Dense(1, activation="sigmoid", name="flag")(h)
    m = keras.Model(tokens, flag)
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    return m


def gru_text():
    """The headline shape with a GRU trunk: Embedding → GRU, so the fused path and the compact table gradient apply."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="main_input")
    trunk = L.GRU(4, name="gru")(L.Embedding(50, 16, name="embedding")(tokens))
    aux = L.Dense(1, activation="sigmoid", use_bias=False, name="aux_output")(trunk)  # its bias barely moves here
    extra = keras.Input(shape=(3,), name="aux_input")
    x = L.Dense(8, activation="relu", name="dense")(L.Concatenate(name="concatenate")([trunk, extra]))
    main = L.Dense(1, activation="sigmoid", name="main_output")(x)
    m = keras.Model([tokens, extra], [main, aux])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
              loss_weights={"main_output": 1.0, "aux_output": 0.5}, metrics={"main_output": ["accuracy"], "aux_output": ["accuracy"]})
    return m


def regression():
    """The regression and distribution losses: MAE, Huber, log-cosh, Poisson (on a softplus output), KL divergence
    (on a softmax output), by name and as objects."""
    x_in = keras.Input(shape=(7,), name="features")
    h = L.Dense(10, activation="tanh", name="trunk")(x_in)
    heads = {"level": L.Dense(2, name="level")(h), "robust": L.Dense(1, name="robust")(h),
             "smooth": L.Dense(2, activation="tanh", name="smooth")(h), "rate": L.Dense(1, activation="softplus", name="rate")(h),
             "mix": L.Dense(3, activation="softmax", name="mix")(h)}
    m = keras.Model(x_in, list(heads.values()))
    m.compile(optimizer=keras.optimizers.Adam(0.01),
              loss={"level": "mae", "robust": keras.losses.Huber(), "smooth": "log_cosh", "rate": keras.losses.Poisson(),
                    "mix": "kl_divergence"}, loss_weights={"level": 0.5, "robust": 0.4, "smooth": 0.5, "rate": 0.2, "mix": 0.6})
    return m


def losses():
    """The classification losses' arguments and Huber's delta: label smoothing (BCE folded into a sigmoid, BCE
    from logits, CCE folded into a softmax), binary focal cross-entropy (balanced; and from logits, smoothed),
    sparse categorical cross-entropy with ignore_class (gen-data leaves every fourth sample unlabelled)."""
    x_in = keras.Input(shape=(6,), name="features")
    h = L.Dense(10, activation="tanh", name="trunk")(x_in)
    heads = {"smooth": L.Dense(2, activation="sigmoid", name="smooth")(h), "raw": L.Dense(1, name="raw")(h),
             "topic": L.Dense(4, activation="softmax", name="topic")(h), "rare": L.Dense(1, activation="sigmoid", name="rare")(h),
             "rare_logits": L.Dense(2, name="rare_logits")(h), "partial": L.Dense(3, activation="softmax", name="partial")(h),
             "level": L.Dense(2, name="level")(h)}
    m = keras.Model(x_in, list(heads.values()))
    K = keras.losses
    # A small step and loss weights: the per-epoch losses of seven heads are compared to 2e-6.
    m.compile(optimizer=keras.optimizers.Adam(0.004),
              loss={"smooth": K.BinaryCrossentropy(label_smoothing=0.1), "raw": K.BinaryCrossentropy(from_logits=True, label_smoothing=0.3),
                    "topic": K.CategoricalCrossentropy(label_smoothing=0.2),
                    "rare": K.BinaryFocalCrossentropy(gamma=2.0, alpha=0.3, apply_class_balancing=True),
                    "rare_logits": K.BinaryFocalCrossentropy(gamma=1.5, from_logits=True, label_smoothing=0.1),
                    "partial": K.SparseCategoricalCrossentropy(ignore_class=-1),
                    "level": K.Huber()},  # Keras 3.15's Huber.get_config drops delta: a saved Huber(delta=…) reloads as 1.0
              loss_weights={"smooth": 0.3, "raw": 0.3, "topic": 0.3, "rare": 1.0, "rare_logits": 0.5, "partial": 0.3, "level": 0.3},
              metrics={"topic": ["accuracy"], "partial": ["accuracy"]})
    return m


def metrics():
    """Every compiled metric of docs/SPEC.md §9 on five heads, unweighted and as weighted_metrics (the fixture
    writes sample weights for 'click' and 'score')."""
    x_in = keras.Input(shape=(6,), name="features")
    h = L.Dense(8, activation="tanh", name="trunk")(x_in)
    heads = {"click": L.Dense(1, activation="sigmoid", name="click")(h), "topic": L.Dense(5, activation="softmax", name="topic")(h),
             "mix": L.Dense(4, activation="softmax", name="mix")(h), "score": L.Dense(2, name="score")(h), "logit": L.Dense(1, name="logit")(h)}
    m = keras.Model(x_in, list(heads.values()))
    M = keras.metrics
    # A small step and loss weights: the per-epoch losses are compared to 2e-6.
    m.compile(optimizer=keras.optimizers.Adam(0.003), loss_weights={"click": 0.3, "topic": 0.2, "mix": 0.3, "score": 0.3, "logit": 0.3},
              loss={"click": "binary_crossentropy", "topic": "sparse_categorical_crossentropy", "mix": "categorical_crossentropy",
                    "score": "mse", "logit": keras.losses.BinaryCrossentropy(from_logits=True)},
              metrics={"click": ["accuracy", M.AUC(), M.AUC(curve="PR", num_thresholds=50, name="pr_auc"), M.Precision(),
                                 M.Recall(thresholds=0.4), M.BinaryAccuracy(threshold=0.6, name="strict")],
                       "topic": ["accuracy", M.SparseTopKCategoricalAccuracy(k=2)],
                       "mix": [M.TopKCategoricalAccuracy(k=2, name="top2"), "categorical_accuracy"],
                       "score": ["mae", M.RootMeanSquaredError(), "mse"],
                       "logit": [M.AUC(from_logits=True, name="logit_auc"), M.AUC(summation_method="minoring", name="low_auc")]},
              weighted_metrics={"click": ["accuracy", M.AUC(name="wauc")], "score": ["mae"]})
    return m


def optimizer_model(optimizer):
    """A two-head text model for the optimizer tests: its table feeds an LSTM (Tandem's table paths), and a
    BatchNormalization's moving statistics are variables without slots or weight decay."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    trunk = L.LSTM(4, name="lstm")(L.Embedding(50, 16, name="embedding")(tokens))
    aux = L.Dense(1, activation="sigmoid", name="aux")(trunk)
    extra = keras.Input(shape=(3,), name="extra")
    # No bias before the normalisation: its gradient is exactly zero in theory, float noise in practice,
    # which Adam-like rules blow up to full-size steps in two libraries differently.
    x = L.Dense(8, use_bias=False, name="dense")(L.Concatenate(name="concatenate")([trunk, extra]))
    x = L.Activation("relu", name="relu")(L.BatchNormalization(name="norm")(x))
    main = L.Dense(1, activation="sigmoid", name="main")(x)
    m = keras.Model([tokens, extra], [main, aux])
    m.compile(optimizer=optimizer, loss={"main": "binary_crossentropy", "aux": "binary_crossentropy"},
              loss_weights={"main": 1.0, "aux": 0.3}, metrics={"main": ["accuracy"]})
    return m


S = keras.optimizers.schedules
O = keras.optimizers
# Every optimizer of docs/SPEC.md §9, each modifier on one of them, and every schedule (10 steps: 37 samples, batch 8, 2 epochs).
OPTIMIZERS = {
    "adam_amsgrad": lambda: O.Adam(0.01, amsgrad=True),
    "adamw": lambda: O.AdamW(0.01, weight_decay=0.05),
    "rmsprop_centered": lambda: O.RMSprop(0.005, momentum=0.5, centered=True),
    "adagrad": lambda: O.Adagrad(0.15),
    "adamax": lambda: O.Adamax(0.02),
    "nadam": lambda: O.Nadam(0.01),
    "sgd_clipnorm": lambda: O.SGD(0.1, momentum=0.9, clipnorm=0.05),
    "adam_global_clipnorm": lambda: O.Adam(0.01, global_clipnorm=0.05),
    "rmsprop_clipvalue": lambda: O.RMSprop(0.01, clipvalue=0.002),
    "sgd_weight_decay": lambda: O.SGD(0.2, weight_decay=0.05),
    "exponential": lambda: O.Adam(S.ExponentialDecay(0.02, 4, 0.5)),
    "inverse_time": lambda: O.SGD(S.InverseTimeDecay(0.5, 3, 0.5, staircase=True), momentum=0.5),
    "piecewise": lambda: O.Adam(S.PiecewiseConstantDecay([3, 6], [0.02, 0.01, 0.005])),
    "polynomial": lambda: O.RMSprop(S.PolynomialDecay(0.01, 8, 0.001, power=2.0)),
    "cosine": lambda: O.AdamW(S.CosineDecay(0.001, 6, alpha=0.1, warmup_target=0.005, warmup_steps=3)),
    "cosine_restarts": lambda: O.Nadam(S.CosineDecayRestarts(0.02, 3, t_mul=2.0, m_mul=0.8, alpha=0.05)),
    # Gradient accumulation: the weights move every 3rd (4th) step; the schedule reads every step; an epoch
    # (5 steps) ends mid-window, so the archives and checkpoints between the epochs hold accumulators.
    "adam_accumulate": lambda: O.Adam(S.ExponentialDecay(0.02, 4, 0.5), gradient_accumulation_steps=3),
    "rmsprop_accumulate": lambda: O.RMSprop(0.01, momentum=0.5, gradient_accumulation_steps=4),
    "adadelta": lambda: O.Adadelta(1.0, rho=0.9, epsilon=1e-5),  # its default ε moves the weights by ~1e-4
    "lion": lambda: O.Lion(0.003, beta_1=0.8),
    "adam_ema": lambda: O.Adam(0.01, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=3),
    "ftrl": lambda: O.Ftrl(0.2, l1_regularization_strength=0.001, l2_regularization_strength=0.01,
                           l2_shrinkage_regularization_strength=0.001, beta=0.1),
    # epsilon_2 is the step scale of a zero tensor (the biases start at 0): 0.05 moves them measurably.
    "adafactor": lambda: O.Adafactor(0.05, epsilon_2=0.05, clip_threshold=0.5),
    "lamb": lambda: O.Lamb(0.02, weight_decay=0.01),
    # "^aux" sends the aux head's 2-D kernel to the AdamW half, and "lstm_cell/recurrent" (a pattern on Keras's
    # variable path) the LSTM's recurrent kernel; the embedding goes there by name.
    "muon": lambda: O.Muon(0.01, exclude_layers=["^aux", "lstm_cell/recurrent"]),
    "schedule_free": lambda: O.ScheduleFreeAdamW(0.01, warmup_steps=3),
    # The scale doubles every 3 steps (three times in the two epochs); in float32 a no-op on the gradient.
    "loss_scale": lambda: O.LossScaleOptimizer(O.Adam(0.01), dynamic_growth_steps=3),
}


MODELS = {"headline": headline, "sequential": sequential, "three_heads": three_heads, "shared": shared, "unseen": unseen, "merges": merges,
          "sequence_core": sequence_core, "recurrent": recurrent,
          "conv_bilstm": conv_bilstm, "sequential_text": sequential_text,
          "normalized": normalized, "dropout": dropout,
          "gru_text": gru_text, "regression": regression, "losses": losses, "metrics": metrics,
          # Last: the global seed's draws for the models above stay as they were.
          "dict_outputs": dict_outputs, "functional_guide": functional_guide, "activation_layers": activation_layers}
def dlwp_multi_output():
    """Exactly as published: the three-output model of *Deep Learning with Python* (François Chollet,
    Manning 2017), §7.1.3 "Multi-output models", listings 7.3 (the model) and 7.5 (its compile with loss
    weighting) — social-media posts → age, income group and gender. Kept as printed, including
    `Embedding(256, vocabulary_size)`: 256 token ids embedded in 50 000 dimensions, so the first Conv1D
    reads 50 000 channels (46 million parameters). Its data needs at least 269 tokens a post."""
    from keras import layers, Input
    from keras.models import Model

    vocabulary_size = 50000
    num_income_groups = 10

    posts_input = Input(shape=(None,), dtype='int32', name='posts')
    embedded_posts = layers.Embedding(256, vocabulary_size)(posts_input)
    x = layers.Conv1D(128, 5, activation='relu')(embedded_posts)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation='relu')(x)
    x = layers.Conv1D(256, 5, activation='relu')(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation='relu')(x)
    x = layers.Conv1D(256, 5, activation='relu')(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation='relu')(x)

    age_prediction = layers.Dense(1, name='age')(x)
    income_prediction = layers.Dense(num_income_groups,
                                     activation='softmax',
                                     name='income')(x)
    gender_prediction = layers.Dense(1, activation='sigmoid', name='gender')(x)

    model = Model(posts_input,
                  [age_prediction, income_prediction, gender_prediction])

    model.compile(optimizer='rmsprop',
                  loss=['mse', 'categorical_crossentropy', 'binary_crossentropy'],
                  loss_weights=[0.25, 1., 10.])
    return model


MODELS["dlwp_multi_output"] = dlwp_multi_output


def more_losses():
    """The losses of Keras 3.15 beyond the first ten, one head each: hinge (0/1 targets, converted), squared
    hinge, categorical hinge, MAPE (reduction "mean"), MSLE, cosine similarity, Dice and Tversky per sample,
    categorical focal cross-entropy (smoothed, and from logits) and generalized cross-entropy (class ids)."""
    x_in = keras.Input(shape=(6,), name="features")
    h = L.Dense(10, activation="tanh", name="trunk")(x_in)
    heads = {"hinge": L.Dense(2, activation="tanh", name="hinge")(h), "sq_hinge": L.Dense(1, name="sq_hinge")(h),
             "cat_hinge": L.Dense(3, activation="softmax", name="cat_hinge")(h), "mape": L.Dense(2, name="mape")(h),
             "msle": L.Dense(2, activation="softplus", name="msle")(h), "cosine": L.Dense(3, name="cosine")(h),
             "dice": L.Dense(2, activation="sigmoid", name="dice")(h),
             "tversky": L.Dense(3, activation="sigmoid", name="tversky")(h),
             "focal": L.Dense(4, activation="softmax", name="focal")(h), "focal_logits": L.Dense(3, name="focal_logits")(h),
             "gce": L.Dense(4, activation="softmax", name="gce")(h)}
    m = keras.Model(x_in, list(heads.values()))
    K = keras.losses
    m.compile(optimizer=keras.optimizers.Adam(0.004),
              loss={"hinge": K.Hinge(), "sq_hinge": "squared_hinge", "cat_hinge": K.CategoricalHinge(),
                    "mape": K.MeanAbsolutePercentageError(reduction="mean"), "msle": "msle",
                    "cosine": K.CosineSimilarity(axis=-1), "dice": K.Dice(axis=-1),
                    "tversky": K.Tversky(alpha=0.7, beta=0.3, axis=-1),
                    "focal": K.CategoricalFocalCrossentropy(alpha=0.4, gamma=1.5, label_smoothing=0.1),
                    "focal_logits": K.CategoricalFocalCrossentropy(from_logits=True),
                    "gce": K.CategoricalGeneralizedCrossEntropy(q=0.7)},
              loss_weights={"hinge": 0.3, "sq_hinge": 0.3, "cat_hinge": 0.3, "mape": 0.003, "msle": 0.3, "cosine": 0.3,
                            "dice": 0.3, "tversky": 0.3, "focal": 1.0, "focal_logits": 0.5, "gce": 0.3})
    return m


MODELS["more_losses"] = more_losses


def more_layers():
    """Element-wise layers with arguments and the row normalisations: Rescaling (scale and offset), ReLU with
    max_value, negative_slope and threshold, ReLU(max_value=2), LeakyReLU(0.1), ELU(0.5), UnitNormalization and
    RMSNormalization (its scale learned)."""
    x_in = keras.Input(shape=(6,), name="features")
    h = L.Dense(8, name="trunk")(L.Rescaling(0.5, offset=-0.1, name="rescale")(x_in))
    a = L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2, name="relu_args")(h)
    b = L.LeakyReLU(negative_slope=0.1, name="leaky")(h)
    c = L.ELU(alpha=0.5, name="elu")(h)
    d = L.ReLU(max_value=2.0, name="relu_max")(h)
    u = L.UnitNormalization(name="unit")(L.Dense(5, name="pre_unit")(a))
    r = L.RMSNormalization(name="rms")(L.Dense(5, name="pre_rms")(b))
    one = L.Dense(2, activation="tanh", name="one")(L.Concatenate(name="joined")([u, c, d]))
    two = L.Dense(2, activation="sigmoid", name="two")(r)
    m = keras.Model(x_in, [one, two])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["mse", "binary_crossentropy"], loss_weights=[1.0, 0.5])
    return m


MODELS["more_layers"] = more_layers


def sequence_moves():
    """Layers that move a sequence's steps, and PReLU: ZeroPadding1D, Cropping1D, UpSampling1D, Permute, and
    PReLU with its alpha shared along the time axis and per element."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(30, 6, name="embed")(tokens)
    x = L.ZeroPadding1D((1, 2), name="pad")(x)
    x = L.Conv1D(5, 3, name="conv")(x)
    x = L.PReLU(shared_axes=[1], alpha_initializer=keras.initializers.Constant(0.25), name="prelu")(x)
    x = L.Cropping1D((2, 1), name="crop")(x)
    x = L.UpSampling1D(2, name="up")(x)
    p = L.Permute((2, 1), name="perm")(x)
    flag = L.Dense(1, activation="sigmoid", name="flag")(L.GlobalAveragePooling1D(name="gap")(p))
    kind = L.Dense(3, activation="softmax", name="kind")(L.Flatten(name="flat")(L.PReLU(name="prelu_full")(x)))
    m = keras.Model(tokens, [flag, kind])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["binary_crossentropy", "sparse_categorical_crossentropy"])
    return m


MODELS["sequence_moves"] = sequence_moves


def dot_products():
    """Dot on vectors (plain and normalize=True, axes 1 and -1) and on sequences (axes (2, 2): every pair of
    steps; axes (1, 1) normalised: every pair of features)."""
    a = keras.Input(shape=(5,), name="a")
    b = keras.Input(shape=(5,), name="b")
    q = keras.Input(shape=(4, 3), name="q")
    ha = L.Dense(6, activation="tanh", name="ha")(a)
    hb = L.Dense(6, activation="tanh", name="hb")(b)
    sim = L.Dot(axes=1, name="sim")([ha, hb])
    cos = L.Dot(axes=-1, normalize=True, name="cos")([ha, hb])
    s = L.Dense(3, name="proj")(q)
    pairs = L.Dot(axes=(2, 2), name="pairs")([s, q])
    cols = L.Dot(axes=(1, 1), normalize=True, name="cols")([s, q])
    joined = L.Concatenate(name="joined")([sim, cos, L.Flatten(name="flat_pairs")(pairs), L.Flatten(name="flat_cols")(cols)])
    score = L.Dense(2, activation="tanh", name="score")(joined)
    match = L.Dense(1, activation="sigmoid", name="match")(cos)
    m = keras.Model([a, b, q], [score, match])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["mse", "binary_crossentropy"])
    return m


MODELS["dot_products"] = dot_products


def noise_layers():
    """GaussianNoise, GaussianDropout and AlphaDropout, on in training. Their draws are Tandem's own (like
    dropout's), so the tests check them against other rank counts, not Keras."""
    x_in = keras.Input(shape=(6,), name="features")
    h = L.Dense(8, activation="selu", name="trunk")(L.GaussianNoise(0.3, name="noise")(x_in))
    a = L.AlphaDropout(0.2, name="alpha_drop")(h)
    b = L.GaussianDropout(0.3, name="gauss_drop")(h)
    one = L.Dense(1, activation="sigmoid", name="one")(a)
    two = L.Dense(2, name="two")(b)
    m = keras.Model(x_in, [one, two])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["binary_crossentropy", "mse"])
    return m


MODELS["noise_layers"] = noise_layers


def constrained():
    """Weight constraints applied after each update: MinMaxNorm on an Embedding's rows (axis 1), MaxNorm on a
    Dense kernel's columns, NonNeg on its bias, UnitNorm on another kernel."""
    C = keras.constraints
    tokens = keras.Input(shape=(6,), dtype="int32", name="tokens")
    x_in = keras.Input(shape=(4,), name="features")
    e = L.Embedding(20, 5, embeddings_constraint=C.MinMaxNorm(0.5, 1.0, rate=0.8, axis=1), name="embed")(tokens)
    joined = L.Concatenate(name="joined")([L.GlobalAveragePooling1D(name="gap")(e), x_in])
    h = L.Dense(6, activation="tanh", kernel_constraint=C.MaxNorm(0.6), bias_constraint=C.NonNeg(), name="trunk")(joined)
    u = L.Dense(3, kernel_constraint=C.UnitNorm(axis=0), name="unit")(h)
    one = L.Dense(1, activation="sigmoid", name="one")(u)
    two = L.Dense(2, name="two")(h)
    m = keras.Model([tokens, x_in], [one, two])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["binary_crossentropy", "mse"])
    return m


MODELS["constrained"] = constrained


def reductions():
    """The loss reductions beyond sum_over_batch_size: "sum" (the batch's sum) and "mean_with_sample_weight"
    (divided by the batch's Σ sample weight); the fixture writes sample weights for both heads."""
    x_in = keras.Input(shape=(5,), name="features")
    h = L.Dense(6, activation="tanh", name="trunk")(x_in)
    summed = L.Dense(2, name="summed")(h)
    weighted = L.Dense(1, activation="sigmoid", name="weighted")(h)
    m = keras.Model(x_in, [summed, weighted])
    m.compile(optimizer=keras.optimizers.Adam(0.002),
              loss={"summed": keras.losses.MeanSquaredError(reduction="sum"),
                    "weighted": keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")},
              loss_weights={"summed": 0.05, "weighted": 1.0})
    return m


MODELS["reductions"] = reductions


def feature_normalization():
    """Normalization adapted to data (its mean, variance and count saved as variables), given its mean and
    variance in the config, and inverted on an output; GroupNormalization on a sequence and on features."""
    x_in = keras.Input(shape=(4,), name="features")
    steps = keras.Input(shape=(5, 6), name="steps")
    grouped = L.GroupNormalization(groups=3, name="grouped")(L.Dense(6, name="pre_group")(steps))
    pooled = L.GlobalAveragePooling1D(name="pool")(grouped)
    flat = L.GroupNormalization(groups=2, center=False, epsilon=0.01, name="flat_group")(L.Dense(4, name="pre_flat")(x_in))
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(2.0, 3.0, (64, 4)).astype("float32"))
    h = L.Dense(6, activation="tanh", name="trunk")(norm(x_in))
    fixed = L.Normalization(mean=[0.5, -1.0, 2.0, 0.0], variance=[4.0, 1.0, 0.25, 9.0], name="fixed")(x_in)
    one = L.Dense(1, activation="sigmoid", name="one")(L.Concatenate(name="joined")([h, fixed, pooled, flat]))
    decoded = L.Normalization(mean=[1.0], variance=[2.25], invert=True, name="decode")(L.Dense(2, activation="tanh", name="raw")(h))
    m = keras.Model([x_in, steps], [one, decoded])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["binary_crossentropy", "mse"])
    return m


MODELS["feature_normalization"] = feature_normalization


def masking():
    """Masking as Keras 3 saves it: the layer, and its mask as ops (not_equal with the mask value, any over
    the features) passed to an LSTM, a Dense's sequence's GlobalAveragePooling1D and a Bidirectional GRU.
    mask_value -1: Masking zeroes those steps itself. The fixture sets a few steps of each sample to -1."""
    x_in = keras.Input(shape=(6, 3), name="steps")
    masked = L.Masking(mask_value=-1.0, name="masking")(x_in)
    h = L.LSTM(4, name="lstm")(masked)
    per_step = L.Dense(5, activation="tanh", name="per_step")(masked)
    pooled = L.GlobalAveragePooling1D(name="pool")(per_step)
    both = L.Bidirectional(L.GRU(3), name="bigru")(per_step)
    first = L.Dense(1, activation="sigmoid", name="first")(L.Concatenate(name="joined")([h, pooled]))
    second = L.Dense(3, activation="softmax", name="second")(both)
    m = keras.Model(x_in, [first, second])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["binary_crossentropy", "sparse_categorical_crossentropy"])
    return m


MODELS["masking"] = masking


def sequential_masking():
    """Masking in a Sequential model: its file does not spell the mask out; it flows to the LSTM."""
    m = keras.Sequential([keras.Input(shape=(6, 3), name="steps"), L.Masking(mask_value=-1.0, name="masking"),
                          L.Dense(4, activation="tanh", name="per_step"), L.LSTM(3, name="lstm"),
                          L.Dense(2, name="out")])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return m


MODELS["sequential_masking"] = sequential_masking


def activity():
    """Activity regularization: the ActivityRegularization layer (L1 and L2 on a ReLU's output, whose exact
    zeros take sign 0) and activity_regularizer on a hidden Dense and on an LSTM; Keras adds each ÷ the
    batch to the loss, in fit and in evaluate."""
    x_in = keras.Input(shape=(5,), name="features")
    seq = keras.Input(shape=(4, 2), name="steps")
    h = L.Dense(6, activation="relu", name="hidden")(x_in)
    h = L.ActivityRegularization(l1=0.01, l2=0.02, name="sparse")(h)
    g = L.Dense(4, activation="tanh", activity_regularizer=keras.regularizers.L2(0.05), name="coded")(h)
    r = L.LSTM(3, activity_regularizer=keras.regularizers.L1(0.03), name="lstm")(seq)
    out = L.Dense(1, name="out")(L.Concatenate(name="joined")([g, r]))
    side = L.Dense(2, activation="softmax", name="side")(h)
    m = keras.Model([x_in, seq], [out, side])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "sparse_categorical_crossentropy"],
              loss_weights=[1.0, 0.5])
    return m


MODELS["activity"] = activity


def softmax_axes():
    """Softmax over the steps of a sequence (axis 1, per feature: attention-like pooling weights) and over a
    whole sample (axes 1 and 2), beside the last-axis softmax."""
    x_in = keras.Input(shape=(5, 4), name="steps")
    scores = L.Dense(3, name="scores")(x_in)
    over_steps = L.Softmax(axis=1, name="over_steps")(scores)
    pooled = L.GlobalAveragePooling1D(name="pool")(L.Multiply(name="weighted")([over_steps, scores]))
    whole = L.Flatten(name="flat")(L.Softmax(axis=[1, 2], name="whole")(scores))
    first = L.Dense(1, name="first")(L.Concatenate(name="joined")([pooled, whole]))
    second = L.Dense(2, name="second_logits")(L.Flatten(name="flat_scores")(scores))
    m = keras.Model(x_in, [first, L.Softmax(axis=-1, name="second")(second)])
    m.compile(optimizer=keras.optimizers.Adam(0.004), loss=["mse", "sparse_categorical_crossentropy"])
    return m


MODELS["softmax_axes"] = softmax_axes


def coupled_losses():
    """The losses that couple a batch's samples: Dice and Tversky with their default axis None (over the
    whole batch) and Circle on L2-normalised embeddings with class ids; each rank's rows are gathered."""
    x_in = keras.Input(shape=(5,), name="features")
    h = L.Dense(6, activation="tanh", name="trunk")(x_in)
    overlap = L.Dense(3, activation="sigmoid", name="overlap")(h)
    tversky = L.Dense(2, activation="sigmoid", name="tversky")(h)
    embedding = L.UnitNormalization(name="embedding")(L.Dense(4, name="project")(h))
    m = keras.Model(x_in, [overlap, tversky, embedding])
    m.compile(optimizer=keras.optimizers.Adam(0.005),
              loss={"overlap": keras.losses.Dice(), "tversky": keras.losses.Tversky(alpha=0.3, beta=0.7),
                    "embedding": keras.losses.Circle(gamma=4.0, margin=0.3)},
              loss_weights={"overlap": 1.0, "tversky": 0.5, "embedding": 0.2})
    return m


MODELS["coupled_losses"] = coupled_losses


def frozen():
    """Fine-tuning's first step, layers frozen with trainable=False: a pretrained-style Embedding read by a
    trainable LSTM, a Dense with an L2 penalty and a max-norm constraint (Keras adds neither for a frozen
    layer), an LSTM, and a BatchNormalization that then runs in inference mode — beside trainable layers
    and a trainable BatchNormalization. Keras keeps no optimizer variables for the frozen weights."""
    tokens = keras.Input(shape=(6,), dtype="int32", name="tokens")
    x_in = keras.Input(shape=(5,), name="features")
    seq = keras.Input(shape=(4, 3), name="steps")
    read = L.LSTM(3, name="reader")(L.Embedding(20, 4, name="pretrained", trainable=False)(tokens))
    base = L.Dense(6, activation="relu", name="base", trainable=False, kernel_regularizer=keras.regularizers.L2(0.05),
                   kernel_constraint=keras.constraints.MaxNorm(0.5))(x_in)
    frozen_norm = L.BatchNormalization(name="frozen_norm", trainable=False)(L.Dense(4, name="pre_frozen")(x_in))
    # No bias before the trainable normalisation (its gradient is float noise that Adam makes full steps of).
    live_norm = L.BatchNormalization(name="live_norm")(L.Dense(4, use_bias=False, name="pre_live")(x_in))
    r = L.LSTM(3, name="frozen_lstm", trainable=False)(seq)
    h = L.Concatenate(name="joined")([read, base, frozen_norm, live_norm, r])
    a = L.Dense(1, activation="sigmoid", name="a")(h)
    b = L.Dense(2, activation="softmax", name="b")(L.Dense(5, activation="tanh", name="head_hidden")(h))
    m = keras.Model([tokens, x_in, seq], [a, b])
    m.compile(optimizer=keras.optimizers.Adam(0.005), loss=["binary_crossentropy", "sparse_categorical_crossentropy"])
    return m


MODELS["frozen"] = frozen


def pooling_keepdims():
    """GlobalAveragePooling1D (masked) and GlobalMaxPooling1D with keepdims=True: [B, 1, C], read on."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    e = L.Embedding(12, 5, mask_zero=True, name="embedding")(tokens)
    steps = L.Dense(4, activation="tanh", name="per_step")(e)
    mean = L.GlobalAveragePooling1D(keepdims=True, name="mean")(steps)
    top = L.GlobalMaxPooling1D(keepdims=True, name="top")(steps)
    joined = L.Flatten(name="flat")(L.Concatenate(name="joined")([mean, top]))
    first = L.Dense(1, activation="sigmoid", name="first")(joined)
    second = L.Dense(3, activation="softmax", name="second")(L.Reshape((4,), name="squeeze")(top))
    m = keras.Model(tokens, [first, second])
    m.compile(optimizer=keras.optimizers.Adam(0.005), loss=["binary_crossentropy", "sparse_categorical_crossentropy"])
    return m


MODELS["pooling_keepdims"] = pooling_keepdims


def image_heads():
    """A convolutional trunk with three heads (#31): Conv2D (same, and strided with groups), BatchNormalization
    on [B, H, W, C], MaxPooling2D, DepthwiseConv2D (depth_multiplier 2), SeparableConv2D, Conv2DTranspose,
    AveragePooling2D (same, strided), the global poolings, Flatten."""
    image = keras.Input(shape=(12, 10, 3), name="image")
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(image)
    x = L.BatchNormalization(name="norm")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh", name="depthwise")(x)
    x = L.Conv2D(8, 2, strides=2, groups=4, padding="same", name="grouped")(x)
    s = L.SeparableConv2D(5, 2, activation="elu", name="separable")(x)
    mean = L.GlobalAveragePooling2D(name="mean")(s)
    top = L.GlobalMaxPooling2D(name="top")(x)
    up = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="up")(x)
    pooled = L.AveragePooling2D((3, 2), strides=(2, 1), padding="same", name="average")(up)
    flat = L.Flatten(name="flat")(pooled)
    age = L.Dense(1, name="age")(L.Concatenate(name="joined")([mean, top]))
    kind = L.Dense(3, activation="softmax", name="kind")(flat)
    flag = L.Dense(1, activation="sigmoid", name="flag")(mean)
    m = keras.Model(image, [age, kind, flag])
    m.compile(optimizer=keras.optimizers.Adam(0.002), loss=["mse", "sparse_categorical_crossentropy", "binary_crossentropy"],
              loss_weights=[0.5, 1.0, 0.3], metrics=[[], ["accuracy"], ["accuracy"]])
    return m


MODELS["image_heads"] = image_heads


def image_resampling():
    """The layers that move and resample image cells, and the 1-D forms of the new convolutions: ZeroPadding2D,
    Cropping2D, CenterCrop, UpSampling2D (nearest, bilinear), Resizing (bilinear with antialias down, nearest,
    crop_to_aspect_ratio), Conv2D with dilation, Conv1DTranspose, DepthwiseConv1D, SeparableConv1D, and
    Dense and LayerNormalization on [B, H, W, C]."""
    image = keras.Input(shape=(9, 8, 2), name="image")
    x = L.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(image)
    x = L.Conv2D(4, 3, dilation_rate=2, activation="tanh", name="dilated")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(x)
    x = L.Cropping2D(((1, 2), (0, 1)), name="crop")(x)
    x = L.LayerNormalization(name="ln")(x)
    small = L.Resizing(5, 4, antialias=True, name="shrink")(x)
    near = L.Resizing(7, 3, interpolation="nearest", crop_to_aspect_ratio=True, name="nearest")(x)
    near = L.UpSampling2D((1, 2), name="up_nearest")(near)
    center = L.CenterCrop(4, 4, name="center")(near)
    d = L.Dense(3, activation="relu", name="per_cell")(center)
    first = L.Dense(2, activation="softmax", name="first")(L.Flatten(name="flat_small")(small))
    second = L.Dense(1, name="second")(L.GlobalAveragePooling2D(name="mean_center")(d))
    seq = keras.Input(shape=(7, 3), name="series")
    t = L.Conv1DTranspose(4, 3, strides=2, name="transposed_1d")(seq)
    t = L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="tanh", name="depthwise_1d")(t)
    t = L.SeparableConv1D(3, 2, strides=2, name="separable_1d")(t)
    third = L.Dense(1, activation="sigmoid", name="third")(L.GlobalAveragePooling1D(name="mean_1d")(t))
    m = keras.Model([image, seq], [first, second, third])
    m.compile(optimizer=keras.optimizers.Adam(0.002), loss=["sparse_categorical_crossentropy", "mse", "binary_crossentropy"])
    return m


MODELS["image_resampling"] = image_resampling


def dense_prediction():
    """Outputs with spatial and time axes (#31): per-pixel classes (sparse categorical cross-entropy with
    ignore_class, accuracy, MeanIoU, IoU) and depth (MSE, MAE) on a [B, H, W, C] trunk, per-token tags on an
    LSTM's sequence (categorical cross-entropy, OneHotMeanIoU; its sample weights are one per token), and a
    per-sample flag (BinaryIoU). Keras averages each loss over every element, then over the batch."""
    image = keras.Input(shape=(8, 6, 3), name="image")
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(image)
    x = L.Conv2D(6, 3, padding="same", activation="tanh", name="conv2")(x)
    segment = L.Dense(4, activation="softmax", name="segment")(x)
    depth = L.Conv2D(1, 3, padding="same", name="depth")(x)
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    steps = L.LSTM(6, return_sequences=True, name="lstm")(L.Embedding(20, 5, name="embedding")(tokens))
    tags = L.Dense(3, activation="softmax", name="tags")(steps)
    joined = L.Concatenate(name="joined")(
        [L.GlobalAveragePooling2D(name="pooled")(x), L.GlobalAveragePooling1D(name="mean_steps")(steps)])
    flag = L.Dense(1, activation="sigmoid", name="flag")(joined)
    m = keras.Model([image, tokens], [segment, depth, tags, flag])
    M = keras.metrics
    m.compile(optimizer=keras.optimizers.Adam(0.005),
              loss=[keras.losses.SparseCategoricalCrossentropy(ignore_class=3), "mse", "categorical_crossentropy",
                    "binary_crossentropy"],
              loss_weights=[1.0, 0.5, 0.7, 0.3],
              metrics=[["accuracy", M.MeanIoU(4, sparse_y_pred=False), M.IoU(4, [0, 2], sparse_y_pred=False)],
                       ["mae"], ["accuracy", M.OneHotMeanIoU(3)], [M.BinaryIoU(target_class_ids=[0, 1])]])
    return m


MODELS["dense_prediction"] = dense_prediction


def image_timeseries():
    """Keras's "training & evaluation with the built-in methods" guide model, as written there: an image and a
    time series of any length → a score and a class (Conv2D, GlobalMaxPooling2D, Conv1D, GlobalMaxPooling1D,
    concatenate; MSE and categorical cross-entropy on a linear output; MAPE, MAE and categorical accuracy)."""
    image_input = keras.Input(shape=(32, 32, 3), name="img_input")
    timeseries_input = keras.Input(shape=(None, 10), name="ts_input")
    x1 = L.Conv2D(3, 3)(image_input)
    x1 = L.GlobalMaxPooling2D()(x1)
    x2 = L.Conv1D(3, 3)(timeseries_input)
    x2 = L.GlobalMaxPooling1D()(x2)
    x = L.concatenate([x1, x2])
    score_output = L.Dense(1, name="score_output")(x)
    class_output = L.Dense(5, name="class_output")(x)
    model = keras.Model(inputs=[image_input, timeseries_input], outputs=[score_output, class_output])
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[keras.losses.MeanSquaredError(), keras.losses.CategoricalCrossentropy()],
        metrics=[[keras.metrics.MeanAbsolutePercentageError(), keras.metrics.MeanAbsoluteError()],
                 [keras.metrics.CategoricalAccuracy()]])
    return model


MODELS["image_timeseries"] = image_timeseries


def token_tags():
    """Per-token heads under Keras masks (#31): Embedding(mask_zero=True) → Bidirectional(LSTM) → TimeDistributed(Dense)
    tags (sparse categorical cross-entropy), and Masking → GRU → Dense per step (categorical). Keras passes the mask on
    to these outputs and divides each loss by the unmasked steps; their accuracy counts the unmasked steps only."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(12, 6, mask_zero=True, name="embedding")(tokens)
    x = L.Bidirectional(L.LSTM(4, return_sequences=True), name="bilstm")(x)
    tags = L.TimeDistributed(L.Dense(3, activation="softmax"), name="tags")(x)
    steps = keras.Input(shape=(6, 3), name="steps")
    y = L.GRU(4, return_sequences=True, name="gru")(L.Masking(-1.0, name="masking")(steps))
    marks = L.Dense(2, activation="softmax", name="marks")(L.Dropout(0.0, name="keep")(y))
    m = keras.Model([tokens, steps], [tags, marks])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy", "categorical_crossentropy"],
              loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["accuracy"]])
    return m


MODELS["token_tags"] = token_tags


def augmentation():
    """The image augmentation layers inside a model (#31), on in training: RandomFlip, RandomTranslation,
    RandomRotation, RandomZoom, RandomContrast, RandomBrightness. Their draws are Tandem's own (like dropout's),
    so the tests check them against other rank counts; in inference they pass the image through, as Keras's."""
    image = keras.Input(shape=(10, 8, 3), name="image")
    x = L.RandomFlip("horizontal", name="flip")(image)
    x = L.RandomTranslation(0.1, 0.15, fill_mode="constant", name="shift")(x)
    x = L.RandomRotation(0.05, name="turn")(x)
    x = L.RandomZoom((-0.2, 0.1), interpolation="nearest", fill_mode="nearest", name="zoom")(x)
    x = L.RandomContrast(0.3, value_range=(-4, 4), name="contrast")(x)
    x = L.RandomBrightness(0.1, value_range=(-4, 4), name="brightness")(x)
    x = L.Conv2D(4, 3, activation="relu", name="conv")(x)
    pooled = L.GlobalAveragePooling2D(name="pool")(x)
    kind = L.Dense(3, activation="softmax", name="kind")(pooled)
    size = L.Dense(1, name="size")(pooled)
    m = keras.Model(image, [kind, size])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy", "mse"])
    return m


MODELS["augmentation"] = augmentation


def backbone_model(make, trainable_tail, size=32, **kwargs):
    """A keras.applications backbone (weights=None, so nothing is downloaded) fine-tuned as Keras's transfer-learning
    guide does it: used as a layer, called with training=False, every layer frozen but its last `trainable_tail`, and
    two heads on its pooled features. The nested Functional model loads with its layers and weights under their Keras
    paths. Keras 3's fit overrides the saved training=False (keras-team/keras#20285), so the BatchNormalization layers
    are frozen too, which keeps them on their moving statistics — the guide's intent. (Trained on batch statistics of
    8 samples at 1×1 cells, a deep network's gradient is ill-conditioned: Keras's own float32 and float64 fits part
    as far as Tandem's does, so no fit can be compared weight for weight.) SGD with momentum: behind ReLUs some
    gradients are float32 noise around zero, and Adam moves each weight ±lr whatever its gradient's size; SGD's step
    is the gradient's size. With weights=None and moving statistics at their initial values, MobileNetV2's and
    EfficientNetB0's pooled features are ~1e-6 at 32×32, so their last blocks barely move; their heads train."""
    def build():
        base = make(weights=None, include_top=False, input_shape=(size, size, 3), **kwargs)
        for i, layer in enumerate(base.layers):
            if i < len(base.layers) - trainable_tail or isinstance(layer, L.BatchNormalization):
                layer.trainable = False
        image = keras.Input(shape=(size, size, 3), name="image")
        features = L.GlobalAveragePooling2D(name="pooled")(base(image, training=False))
        age = L.Dense(1, name="age")(features)
        kind = L.Dense(3, activation="softmax", name="kind")(features)
        m = keras.Model(image, [age, kind])
        m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss=["mse", "sparse_categorical_crossentropy"],
                  loss_weights=[0.5, 1.0])
        return m
    return build


def efficientnet_b0_without_stochastic_depth(**kwargs):
    """EfficientNetB0 as keras.applications builds it, but with drop_connect_rate 0: its blocks' stochastic-depth
    Dropout layers draw Keras's own random masks in training, which no other trainer can reproduce (the real
    B0, dropout on, is compared across rank counts instead)."""
    from keras.src.applications.efficientnet import EfficientNet
    return EfficientNet(1.0, 1.0, 224, 0.2, drop_connect_rate=0.0, name="efficientnetb0", weights_name="b0", **kwargs)


BACKBONES = {  # the tails: VGG16's last block, ResNet50's last residual block, MobileNetV2's and EfficientNetB0's tops
    "backbone_vgg16": backbone_model(keras.applications.VGG16, 4),
    "backbone_resnet50": backbone_model(keras.applications.ResNet50, 10),
    "backbone_mobilenetv2": backbone_model(keras.applications.MobileNetV2, 11, alpha=0.35),
    "backbone_efficientnetb0": backbone_model(efficientnet_b0_without_stochastic_depth, 16),
    # Stochastic depth on: compared across rank counts (its masks are Tandem's own).
    "backbone_efficientnetb0_published": backbone_model(keras.applications.EfficientNetB0, 16),
}


def start_schedule_free_at_weights(optimizer):
    """ScheduleFreeAdamW starts its `momentum` (z) as a copy of the weights. load_model builds the optimizer
    while the layers still hold the values their initializers drew, before the archive's weights are loaded,
    so a loaded, never-trained archive starts z at those draws, not at its weights (Keras 3.15). Copy the
    weights as building the model in-process does; an archive with optimizer state keeps its z."""
    if isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW) and int(optimizer.iterations) == 0:
        for var in optimizer._trainable_variables:
            momentum = optimizer._momentums[optimizer._get_variable_index(var)]
            if momentum is not None:
                momentum.assign(np.array(var.value))


def seeded_optimizer_model(make):
    # The same starting weights for every optimizer, whatever models come before it in MODELS.
    keras.utils.set_random_seed(7)
    return optimizer_model(make())


MODELS.update({"opt_" + name: (lambda make=make: seeded_optimizer_model(make)) for name, make in OPTIMIZERS.items()})


def attention_heads():
    """A small transformer encoder block with two heads (#33): self-attention (3 heads) with a residual and
    LayerNormalization, a feed-forward pair, then a sentence label (mean over the steps) and per-token tags read
    from a causal attention with a key of its own, output_shape and no biases."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    # Embeddings of unit scale (not Keras's ±0.05): attention over near-equal logits would barely train its
    # query and key projections in the test's ten steps.
    x = L.Embedding(30, 12, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embedding")(tokens)
    a = L.MultiHeadAttention(num_heads=3, key_dim=4, name="self_attention")(x, x)
    x = L.LayerNormalization(name="norm_1")(L.Add(name="residual_1")([x, a]))
    f = L.Dense(12, name="ffn_out")(L.Dense(16, activation="relu", name="ffn_in")(x))
    x = L.LayerNormalization(name="norm_2")(L.Add(name="residual_2")([x, f]))
    keys = L.Dense(4, use_bias=False, name="keys")(x)  # a bias there would have no gradient at all
    # value_dim as key_dim: Keras 3.15 on JAX cannot run value_dim != key_dim without dropout (its
    # dot_product_attention reshapes the output to the query's shape).
    c = L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=3, output_shape=6, use_bias=False,
                             name="causal_attention")(x, x, key=keys, use_causal_mask=True)
    sentence = L.Dense(3, activation="softmax", name="sentence")(L.GlobalAveragePooling1D(name="pool")(x))
    tags = L.Dense(5, activation="softmax", name="tags")(c)
    m = keras.Model(tokens, [sentence, tags])
    # SGD with momentum: a key projection's bias has a gradient of zero up to rounding (a shift common to
    # every key leaves the softmax unchanged), which Adam would divide by its own rounding-sized root.
    m.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9),
              loss={"sentence": "sparse_categorical_crossentropy", "tags": "sparse_categorical_crossentropy"},
              loss_weights={"sentence": 1.0, "tags": 0.5},
              metrics={"sentence": ["accuracy"], "tags": ["accuracy"]})
    return m


MODELS["attention_heads"] = attention_heads


def masked_encoder():
    """A transformer encoder over padded sentences with two heads (#33): Embedding(mask_zero=True), so the
    self-attention never attends to padding and a padded query step attends uniformly (Keras's masks, not saved in
    the call); a sentence label from the masked mean and per-token tags whose loss leaves padding out."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(12, 10, mask_zero=True, embeddings_initializer=keras.initializers.RandomUniform(-1, 1),
                    name="embedding")(tokens)  # unit scale, as attention_heads
    a = L.MultiHeadAttention(num_heads=2, key_dim=5, name="attention")(x, x)
    x = L.LayerNormalization(name="norm_1")(L.Add(name="residual_1")([x, a]))
    f = L.Dense(10, name="ffn_out")(L.Dense(16, activation="gelu", name="ffn_in")(x))
    x = L.LayerNormalization(name="norm_2")(L.Add(name="residual_2")([x, f]))
    sentence = L.Dense(3, activation="softmax", name="sentence")(L.GlobalAveragePooling1D(name="pool")(x))
    tags = L.Dense(4, activation="softmax", name="tags")(x)
    m = keras.Model(tokens, [sentence, tags])
    m.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9),
              loss={"sentence": "sparse_categorical_crossentropy", "tags": "sparse_categorical_crossentropy"},
              loss_weights={"sentence": 1.0, "tags": 0.5},
              metrics={"sentence": ["accuracy"], "tags": ["accuracy"]})
    return m


MODELS["masked_encoder"] = masked_encoder


def attention_dropout():
    """Attention with dropout on its probabilities (#33), over padded sentences: Keras takes its einsum path then
    (the query scaled first, a padded query's row all zero); the draws are Tandem's, so training is compared across
    rank counts and inference with Keras."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(12, 8, mask_zero=True, name="embedding")(tokens)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.25, name="attention")(x, x, use_causal_mask=True)
    x = L.LayerNormalization(name="norm")(L.Add(name="residual")([x, a]))
    sentence = L.Dense(3, activation="softmax", name="sentence")(L.GlobalAveragePooling1D(name="pool")(x))
    tags = L.Dense(4, activation="softmax", name="tags")(a)
    m = keras.Model(tokens, [sentence, tags])
    m.compile(optimizer=keras.optimizers.Adam(0.01),
              loss={"sentence": "sparse_categorical_crossentropy", "tags": "sparse_categorical_crossentropy"},
              loss_weights={"sentence": 1.0, "tags": 0.5})
    return m


MODELS["attention_dropout"] = attention_dropout


def attention_layers():
    """EinsumDense (a plain product with tanh, `...`, a per-step score with no kernel axis kept), Attention (dot
    scaled and causal; concat with a separate key), AdditiveAttention and a causal GroupQueryAttention (4 query
    heads over 2 key/value heads) on one sequence, two heads (#33)."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(20, 8, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embedding")(tokens)
    e = L.EinsumDense("abc,cd->abd", output_shape=(None, 6), bias_axes="d", activation="tanh", name="proj")(x)
    f = L.EinsumDense("...b,bc->...c", output_shape=5, bias_axes="c", name="ellipsis")(x)
    a1 = L.Attention(use_scale=True, name="dot")([f, f], use_causal_mask=True)
    a2 = L.Attention(score_mode="concat", use_scale=True, name="concat")([e, x, e])
    a3 = L.AdditiveAttention(name="additive")([f, x, f])
    a4 = L.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2, name="grouped")(
        x, x, use_causal_mask=True)
    joined = L.Concatenate(name="joined")([a1, a2, a3, a4])
    label = L.Dense(3, activation="softmax", name="label")(L.GlobalAveragePooling1D(name="pool")(joined))
    steps = L.EinsumDense("abc,c->ab", output_shape=(7,), name="steps")(joined)
    m = keras.Model(tokens, [label, steps])
    # SGD with momentum, as attention_heads: the key projections' biases have a zero gradient up to rounding.
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss={"label": "sparse_categorical_crossentropy", "steps": "mse"}, loss_weights={"label": 1.0, "steps": 0.3})
    return m


MODELS["attention_layers"] = attention_layers


def hub_encoder():
    """A KerasHub transformer encoder with a sentence head and a per-token head, as users write it (#33): padded
    sentences through TokenAndPositionEmbedding(mask_zero=True), a post-norm and a pre-norm (gelu)
    TransformerEncoder, the masked mean for the sentence, per-token tags whose loss leaves padding out. KerasHub is
    imported here only: the other models need Keras alone."""
    import keras_hub
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        12, 7, 10, mask_zero=True, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embed")(tokens)
    x = keras_hub.layers.TransformerEncoder(16, 2, name="encoder")(x)
    x = keras_hub.layers.TransformerEncoder(12, 2, normalize_first=True, activation="gelu", name="encoder_2")(x)
    sentence = L.Dense(3, activation="softmax", name="sentence")(L.GlobalAveragePooling1D(name="pool")(x))
    tags = L.Dense(4, activation="softmax", name="tags")(x)
    m = keras.Model(tokens, [sentence, tags])
    m.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9),
              loss={"sentence": "sparse_categorical_crossentropy", "tags": "sparse_categorical_crossentropy"},
              loss_weights={"sentence": 1.0, "tags": 0.5}, metrics={"sentence": ["accuracy"], "tags": ["accuracy"]})
    return m


MODELS["hub_encoder"] = hub_encoder


def hub_decoder_lm():
    """A small decoder-only language model with an auxiliary head (#33): padded sentences through a tied
    ReversibleEmbedding(mask_zero=True) plus KerasHub's PositionEmbedding, two KerasHub TransformerDecoders (causal
    self-attention, the padding on the keys; the second pre-norm), the next token at every step from the same
    table (reverse=True; its loss over every step: the reverse call carries no mask) and a binary flag from the
    masked mean."""
    import keras_hub
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    embedding = L.ReversibleEmbedding(
        12, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embedding")
    x = embedding(tokens)
    x = L.Add(name="with_positions")([x, keras_hub.layers.PositionEmbedding(7, name="positions")(x)])
    x = keras_hub.layers.TransformerDecoder(16, 2, name="decoder")(x)
    x = keras_hub.layers.TransformerDecoder(16, 2, normalize_first=True, name="decoder_2")(x)
    next_token = L.Activation("softmax", name="next_token")(embedding(x, reverse=True))
    flag = L.Dense(1, activation="sigmoid", name="flag")(L.GlobalAveragePooling1D(name="pool")(x))
    m = keras.Model(tokens, [next_token, flag])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss={"next_token": "sparse_categorical_crossentropy", "flag": "binary_crossentropy"},
              loss_weights={"next_token": 1.0, "flag": 0.3})
    return m


MODELS["hub_decoder_lm"] = hub_decoder_lm


def hub_classifier():
    """A three-head encoder classifier (#33): token embeddings plus KerasHub's SinePositionEncoding, rotated by its
    RotaryEmbedding, one TransformerEncoder with dropout off, the mean over tokens, then a topic (softmax), a sentiment (sigmoid) and a
    score (regression)."""
    import keras_hub
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = L.Embedding(20, 8, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embedding")(tokens)
    x = L.Add(name="with_positions")([x, keras_hub.layers.SinePositionEncoding(name="positions")(x)])
    x = keras_hub.layers.RotaryEmbedding(max_wavelength=100, scaling_factor=2.0, name="rotary")(x)
    x = L.GlobalAveragePooling1D(name="pool")(keras_hub.layers.TransformerEncoder(16, 2, name="encoder")(x))
    topic = L.Dense(4, activation="softmax", name="topic")(x)
    sentiment = L.Dense(1, activation="sigmoid", name="sentiment")(x)
    score = L.Dense(1, name="score")(x)
    m = keras.Model(tokens, [topic, sentiment, score])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss={"topic": "sparse_categorical_crossentropy", "sentiment": "binary_crossentropy", "score": "mse"},
              loss_weights={"topic": 1.0, "sentiment": 0.5, "score": 0.2},
              metrics={"topic": ["accuracy"], "sentiment": ["accuracy"], "score": ["mae"]})
    return m


MODELS["hub_classifier"] = hub_classifier


def hub_seq2seq():
    """An encoder-decoder (#33): padded source sentences through a KerasHub TransformerEncoder, target tokens through
    a TransformerDecoder that attends to them (cross-attention, the source's padding on its keys), the next target
    token at every step and a source label from the encoder's masked mean."""
    import keras_hub
    source = keras.Input(shape=(7,), dtype="int32", name="tokens")
    target = keras.Input(shape=(5,), dtype="int32", name="target")
    def embed(name, length):
        return keras_hub.layers.TokenAndPositionEmbedding(
            12, length, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name=name)
    encoded = keras_hub.layers.TransformerEncoder(16, 2, name="encoder")(embed("source_embed", 7)(source))
    decoded = keras_hub.layers.TransformerDecoder(16, 2, name="decoder")(embed("target_embed", 5)(target),
                                                                       encoder_sequence=encoded)
    next_token = L.Dense(12, activation="softmax", name="next_token")(decoded)
    label = L.Dense(3, activation="softmax", name="label")(L.GlobalAveragePooling1D(name="pool")(encoded))
    m = keras.Model([source, target], [next_token, label])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss={"next_token": "sparse_categorical_crossentropy", "label": "sparse_categorical_crossentropy"},
              loss_weights={"next_token": 1.0, "label": 0.5})
    return m


MODELS["hub_seq2seq"] = hub_seq2seq


def hub_dropout():
    """KerasHub's encoder and decoder with dropout on (#33): their attention dropout (Keras's einsum path: a padded
    query's row is zero) and Dropout parts draw Tandem's masks, so it is compared across rank counts; inference
    (no dropout) with Keras."""
    import keras_hub
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        12, 7, 8, mask_zero=True, embeddings_initializer=keras.initializers.RandomUniform(-1, 1), name="embed")(tokens)
    x = keras_hub.layers.TransformerEncoder(16, 2, dropout=0.2, name="encoder")(x)
    x = keras_hub.layers.TransformerDecoder(16, 2, dropout=0.2, normalize_first=True, name="decoder")(x)
    tags = L.Dense(4, activation="softmax", name="tags")(x)
    sentence = L.Dense(3, activation="softmax", name="sentence")(L.GlobalAveragePooling1D(name="pool")(x))
    m = keras.Model(tokens, [sentence, tags])
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss={"sentence": "sparse_categorical_crossentropy", "tags": "sparse_categorical_crossentropy"})
    return m


MODELS["hub_dropout"] = hub_dropout


def bench_gru_text():
    """The headline's sizes with a GRU trunk (10 000 × 512 table, 100 tokens, 32 units)."""
    tokens = keras.Input(shape=(100,), dtype="int32", name="main_input")
    trunk = L.GRU(32, name="gru")(L.Embedding(10000, 512, name="embedding")(tokens))
    aux = L.Dense(1, activation="sigmoid", name="aux_output")(trunk)
    extra = keras.Input(shape=(5,), name="aux_input")
    x = L.Concatenate(name="concatenate")([trunk, extra])
    for k in range(3):
        x = L.Dense(64, activation="relu", name=f"dense_{k}")(x)
    main = L.Dense(1, activation="sigmoid", name="main_output")(x)
    m = keras.Model([tokens, extra], [main, aux])
    m.compile(optimizer="adam", loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
              loss_weights={"main_output": 1.0, "aux_output": 0.2})
    return m


def bench_conv_bilstm():
    """A Conv1D + bidirectional-LSTM text model of the same scale: 10 000 × 128 table, 100 tokens."""
    tokens = keras.Input(shape=(100,), dtype="int32", name="tokens")
    x = L.Embedding(10000, 128, name="embedding")(tokens)
    x = L.Conv1D(64, 5, padding="same", activation="relu", name="conv")(x)
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.Bidirectional(L.LSTM(32, return_sequences=True), name="bi_lstm")(x)
    topic = L.Dense(4, activation="softmax", name="topic")(L.GlobalMaxPooling1D(name="max_over_time")(x))
    flag = L.Dense(1, activation="sigmoid", name="flag")(L.GlobalAveragePooling1D(name="mean_over_time")(x))
    m = keras.Model(tokens, [topic, flag])
    m.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "binary_crossentropy"], loss_weights=[1.0, 0.3])
    return m


BENCH = {"gru_text": bench_gru_text, "conv_bilstm": bench_conv_bilstm}


def sublayer_weights(layer, prefix):
    """A layer made of layers (KerasHub's): <layer>/<sublayer>/…/<weight>, as Tandem names them."""
    out = {f"{prefix}{v.name}": np.asarray(v) for v in layer._trainable_variables + layer._non_trainable_variables}
    for sub in layer._layers:
        out.update(sublayer_weights(sub, f"{prefix}{sub.name}/"))
    return out


def weights_of(model, prefix=""):
    """<layer>/<weight> for every layer's variables (an RNN's are its cell's; a nested model's layers are
    <model>/<layer>/<weight>, as Tandem names them)."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update(weights_of(layer, f"{prefix}{layer.name}/"))
            continue
        if isinstance(layer, keras.layers.Bidirectional):  # <layer>/<half>/<weight>, as Tandem names them
            for half in (layer.forward_layer, layer.backward_layer):
                for v in half.weights:
                    out[f"{prefix}{layer.name}/{half.name}/{v.name}"] = np.asarray(v)
            continue
        if isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.GroupQueryAttention)):
            # <layer>/<sublayer>/<weight>, as Tandem names them
            for sub in (layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense):
                for v in sub.weights:
                    out[f"{prefix}{layer.name}/{sub.name}/{v.name}"] = np.asarray(v)
            continue
        if type(layer).__module__.startswith("keras_hub."):
            out.update(sublayer_weights(layer, f"{prefix}{layer.name}/"))
            continue
        for v in layer.weights:
            out[f"{prefix}{layer.name}/{v.name}"] = np.asarray(v)
    return out


def apply_trainable(model, rules):
    """tandem train --trainable: each PATTERN=true|false searched in a layer's name (<model>/<layer> inside a nested
    model; a model's own name takes all its layers), the last rule that finds a layer deciding; then the model is
    compiled again from its compile config, which starts a fresh optimizer, as the transfer-learning guide does."""
    import re
    parsed = [(re.compile(r.rsplit("=", 1)[0]), r.rsplit("=", 1)[1].lower() == "true") for r in rules]

    def decide(layers, prefix, owners, inherited, out):
        """Each leaf layer's trainable flag after the rules, into `out`; whether any is trainable."""
        for layer in layers:
            full = prefix + layer.name
            decided = inherited
            for pattern, value in parsed:
                if pattern.search(full) or any(pattern.search(o) for o in owners):
                    decided = value
            if isinstance(layer, keras.Model):
                decide([l for l in layer.layers if not isinstance(l, keras.layers.InputLayer)], full + "/",
                       owners + [full], decided, out)
            else:
                out[id(layer)] = (layer, layer.trainable if decided is None else decided)

    flags = {}
    decide([l for l in model.layers if not isinstance(l, keras.layers.InputLayer)], "", [], None, flags)
    # A nested model's own flag is whether any of its layers trains (setting it resets its layers: set it first).
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = [flags[id(l)][1] for l in layer._flatten_layers(include_self=False) if id(l) in flags]
            layer.trainable = any(inner)
    for layer, value in flags.values():
        layer.trainable = value
    model.compile_from_config(model.get_compile_config())


def input_names(model):
    return [t._keras_history[0].name for t in model.inputs]


def output_names(model):
    return [t._keras_history[0].name for t in model.outputs]


def load_data(model, data, with_targets=True):
    d = lambda name: np.load(os.path.join(data, name + ".npy"))
    x = {n: d(n) for n in input_names(model)}
    if not with_targets:
        return x, None, None
    # Lists in the model's output order (Keras 3 matches per-output sample weights by position).
    y, w = [], []
    for n, output in zip(output_names(model), model.outputs):
        y.append(d(n).astype("float32"))
        p = os.path.join(data, n + ".sample_weight.npy")
        sw = np.load(p).astype("float32") if os.path.exists(p) else np.ones(len(y[-1]), "float32")
        # One per element (a token's, a pixel's) is kept as it is. One per sample is [N, 1, …] against an
        # output with time or spatial axes: Keras 3.15 squeezes or expands trailing axes of size 1 only, so
        # [N] fails against per-element losses [N, T] ("Incompatible shapes for broadcasting") and [N, 1]
        # lines up with an image's first spatial axis.
        w.append(sw.reshape((-1,) + (1,) * (len(output.shape) - 2)) if sw.size == len(sw) else sw)
    xs = x if len(x) > 1 else next(iter(x.values()))
    if isinstance(getattr(model, "_outputs_struct", None), dict):  # outputs given as a dict: y by name
        names = output_names(model)
        return xs, dict(zip(names, y)), dict(zip(names, w))
    if len(y) == 1:  # a single-output model takes arrays
        return xs, y[0], w[0]
    return xs, y, w


def prediction_list(model, predictions):
    """predict's result in output order (a dict-output model returns a dict by output name)."""
    if isinstance(predictions, dict):
        return [predictions[n] for n in output_names(model)]
    return predictions if isinstance(predictions, (list, tuple)) else [predictions]


def serve():
    """Runs commands read from standard input, one JSON line each ({"args": [...]}: a command line of
    this script), in this one process, so a test suite's hundred Keras calls pay for Python's and
    Keras's start-up once. Each answer is one JSON line: the command's status, standard output and
    standard error. Keras's session is cleared and the seed set before each, as a fresh process has them."""
    import contextlib, io, traceback
    answer = sys.stdout
    for line in sys.stdin:
        args = json.loads(line)["args"]
        out, err = io.StringIO(), io.StringIO()
        status = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                keras.backend.clear_session()
                status = main(args) or 0
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 — the command's failure is its answer, as its exit would be
                traceback.print_exc()
                status = 1
        answer.write(json.dumps({"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\n")
        answer.flush()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["build", "build-backbones", "bench-models", "count", "fit", "weights", "predict", "evaluate", "slots", "inspect", "bad", "serve"])
    p.add_argument("--out"); p.add_argument("--model"); p.add_argument("--data")
    p.add_argument("--batch-size", type=int, default=32); p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-epochs", action="store_true", help="fit: also save OUT.epoch<N>.keras after each epoch")
    p.add_argument("--trainable", action="append", default=[],
                   help="fit: PATTERN=true|false, as tandem train --trainable (then compiled again: a fresh optimizer)")
    a = p.parse_args(argv)
    if a.mode == "serve":
        serve()
        return
    keras.utils.set_random_seed(a.seed)
    if a.mode == "build":
        # One seed for the whole build, in MODELS' order: a model added anywhere but the end changes the
        # initial weights of every model after it (and the tests' trajectories with them).
        os.makedirs(a.out, exist_ok=True)
        for name, make in MODELS.items():
            m = make()
            m.save(os.path.join(a.out, name + ".keras"))
            write_safetensors(os.path.join(a.out, name + ".safetensors"), weights_of(m))
        return
    if a.mode == "build-backbones":  # the keras.applications fine-tuning archives (large: built on their own)
        os.makedirs(a.out, exist_ok=True)
        for name, make in BACKBONES.items():
            m = make()
            m.save(os.path.join(a.out, name + ".keras"))
            write_safetensors(os.path.join(a.out, name + ".safetensors"), weights_of(m))
        return
    if a.mode == "bench-models":  # larger archives for `tandem bench --model`
        os.makedirs(a.out, exist_ok=True)
        for name, make in BENCH.items():
            make().save(os.path.join(a.out, name + ".keras"))
        return
    if a.mode == "bad":
        bad_archives(a.model, a.out)
        return
    model = keras.saving.load_model(a.model)
    if a.mode == "count":  # model.summary()'s totals
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        print(json.dumps({"total": int(model.count_params()), "trainable": trainable}))
        return
    if a.mode == "inspect":
        os.makedirs(a.out, exist_ok=True)
        write_safetensors(os.path.join(a.out, "weights.safetensors"), weights_of(model))
        x, y, w = load_data(model, a.data)
        predictions = prediction_list(model, model.predict(x, batch_size=64, verbose=0))
        for n, v in zip(output_names(model), predictions):
            np.save(os.path.join(a.out, n + ".npy"), np.asarray(v, dtype="float32"))
        print(json.dumps({k: float(v) for k, v in model.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True).items()}))
        return
    if a.mode == "weights":
        write_safetensors(a.out, weights_of(model))
    elif a.mode == "slots":
        write_safetensors(a.out, {v.path: np.asarray(v, dtype="float32").reshape(np.shape(v)) for v in model.optimizer.variables})
    elif a.mode == "fit":
        if a.trainable:
            apply_trainable(model, a.trainable)
        x, y, w = load_data(model, a.data)
        start_schedule_free_at_weights(model.optimizer)
        callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: model.save(f"{a.out}.epoch{e + 1}.keras"))] if a.save_epochs else []
        history = model.fit(x, y, sample_weight=w, batch_size=a.batch_size, epochs=a.epochs, shuffle=False, verbose=0, callbacks=callbacks)
        model.save(a.out)
        write_safetensors(a.out + ".safetensors", weights_of(model))
        print(json.dumps({k: [float(v) for v in vs] for k, vs in history.history.items()}))
    elif a.mode == "predict":
        x, _, _ = load_data(model, a.data, with_targets=False)
        predictions = prediction_list(model, model.predict(x, batch_size=64, verbose=0))
        os.makedirs(a.out, exist_ok=True)
        for n, v in zip(output_names(model), predictions):
            np.save(os.path.join(a.out, n + ".npy"), np.asarray(v, dtype="float32"))
    elif a.mode == "evaluate":
        x, y, w = load_data(model, a.data)
        print(json.dumps({k: float(v) for k, v in model.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True).items()}))


if __name__ == "__main__":
    sys.exit(main())
