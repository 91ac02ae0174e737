"""Train a compiled Keras model with Tandem, from Python: change one line.

    import tandem_keras
    history = tandem_keras.fit(model, x, y, batch_size=32, epochs=3, ranks=2)   # was: model.fit(...)

`fit` saves the model as a .keras archive, writes one .npy per input and per
output (named after them, as `tandem train` reads them), runs `tandem train`
(under mpirun when ranks > 1, or with a hostfile across nodes), streams its
progress to stderr, loads RUN/model.keras, puts its weights into `model` and
returns a keras History whose `.history` holds every metrics.jsonl figure per
epoch and whose `.model` is the loaded model (weights and optimizer state).
It also unpacks: `trained, history = tandem_keras.fit(...)`.

Extra keyword arguments become Tandem flags: `optimizer="adam"` →
`--optimizer adam`, `loss_weight={"aux_output": 0.5}` → `--loss-weight
aux_output=0.5`, `reproducible=True` → `--reproducible`. The tandem binary is
`tandem=`, else $TANDEM_BIN, else `tandem` on PATH, else this repository's
.build/release/tandem. Needs only Keras and numpy.

`x`, `y` and `sample_weight` may each be an array, a list, a dict by name, or a
pandas DataFrame whose columns are named as in Tandem's CSV datasets: `name` for
a width-1 input or output, `name_0 … name_{k-1}` for a wider one (a frame naming
none of them feeds a single-input model whole, as Keras's fit takes it).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ["fit", "TandemError"]


class TandemError(RuntimeError):
    """Tandem stopped with an error; the message is Tandem's own."""


def _names(tensors):
    return [t._keras_history[0].name for t in tensors]


def _binary(tandem):
    if tandem:
        return tandem
    if os.environ.get("TANDEM_BIN"):
        return os.environ["TANDEM_BIN"]
    found = shutil.which("tandem")
    if found:
        return found
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "release", "tandem")
    if os.path.exists(here):
        return os.path.abspath(here)
    raise FileNotFoundError("tandem_keras.fit: no tandem binary (pass tandem=..., set TANDEM_BIN, or build with swift build -c release)")


def _is_frame(value):
    # A pandas DataFrame, recognised by its shape rather than imported (pandas stays optional).
    return hasattr(value, "columns") and hasattr(value, "to_numpy") and hasattr(value, "loc")


def _from_frame(frame, names, argument):
    """A DataFrame → {name: array} by Tandem's CSV column rule: column `name` feeds a width-1
    array, `name_0 … name_{k-1}` a width-k one. A frame with none of the names feeds a model
    with one input (or output) whole, as Keras's fit takes it."""
    columns = [str(c) for c in frame.columns]
    found = {}
    for name in names:
        if name in columns:
            found[name] = frame[name].to_numpy()
            continue
        wide = []
        while f"{name}_{len(wide)}" in columns:
            wide.append(f"{name}_{len(wide)}")
        if wide:
            found[name] = frame[wide].to_numpy()
    if found:
        return found
    if len(names) == 1:
        return {names[0]: frame.to_numpy()}
    raise ValueError(
        f"{argument}: a DataFrame whose columns name none of {names} "
        f"(name a column after each, or <name>_0 … <name>_(k-1) for a wider one)")


def _by_name(value, names, argument, allow_missing=False):
    """An array, a DataFrame, a list in `names` order, or a dict by name → {name: array}."""
    if value is None:
        return {}
    if _is_frame(value):
        value = _from_frame(value, names, argument)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{argument}: unknown name(s) {unknown}; the model has {names}")
        missing = [n for n in names if n not in value]
        if missing and not allow_missing:
            raise ValueError(f"{argument}: missing {missing}")
        return {n: value[n] for n in names if n in value}
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{argument}: {len(value)} arrays for {len(names)} names {names}")
        return dict(zip(names, value))
    if len(names) != 1:
        raise ValueError(f"{argument}: one array given, but the model has {len(names)}: {names} (pass a list or a dict)")
    return {names[0]: value}


def _array(value, argument):
    try:
        a = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any conversion failure is the caller's argument
        raise TypeError(f"{argument}: not an array ({e})") from None
    if a.dtype == object or a.ndim == 0:
        raise TypeError(f"{argument}: expected a numeric array, got {type(value).__name__} of dtype {a.dtype}")
    # C order, as Tandem reads .npy files (a DataFrame's or a transposed array's may be Fortran's).
    return np.ascontiguousarray(a)


def _write(directory, model, x, y, sample_weight, prefix):
    inputs, outputs = _names(model.inputs), _names(model.outputs)
    os.makedirs(directory, exist_ok=True)
    xs = _by_name(x, inputs, f"{prefix}x")
    rows = None
    for name, value in xs.items():
        a = _array(value, f"{prefix}x['{name}']")
        a = a.astype("int32") if np.issubdtype(a.dtype, np.integer) else a.astype("float32")
        if rows is not None and len(a) != rows:
            raise ValueError(f"{prefix}x['{name}']: {len(a)} rows, but other inputs have {rows}")
        rows = len(a)
        np.save(os.path.join(directory, name + ".npy"), a)
    ys = _by_name(y, outputs, f"{prefix}y", allow_missing=True)
    if not ys:
        raise ValueError(f"{prefix}y: no targets (the model's outputs are {outputs})")
    for name, value in ys.items():
        a = _array(value, f"{prefix}y['{name}']").astype("float32")
        if len(a) != rows:
            raise ValueError(f"{prefix}y['{name}']: {len(a)} rows, but x has {rows}")
        np.save(os.path.join(directory, name + ".npy"), a)
    for name, value in _by_name(sample_weight, list(ys), f"{prefix}sample_weight", allow_missing=True).items():
        a = _array(value, f"{prefix}sample_weight['{name}']").astype("float32").reshape(-1)
        if len(a) != rows:
            raise ValueError(f"{prefix}sample_weight['{name}']: {len(a)} rows, but x has {rows}")
        np.save(os.path.join(directory, name + ".sample_weight.npy"), a)
    return rows


def _flags(flags):
    args = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, dict):
            for k, v in value.items():
                args += [flag, f"{k}={v}"]
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


def fit(model, x, y, *, ranks=1, hostfile=None, batch_size=32, epochs=1, sample_weight=None,
        validation_data=None, run_dir=None, tandem=None, mpirun="mpirun", verbose=True, **flags):
    """Train `model` (compiled) with Tandem; see the module's documentation."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}")
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        raise ValueError("model: compile it first (model.compile(optimizer=..., loss=...)): Tandem trains what compile names")
    for name, value in (("ranks", ranks), ("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if hostfile is not None and not os.path.isfile(hostfile):
        raise FileNotFoundError(f"hostfile: {hostfile} does not exist")
    for reserved in ("model", "data", "out", "val_data", "resume"):
        if reserved in flags:
            raise ValueError(f"{reserved}: set by tandem_keras.fit itself; pass run_dir= for the run directory")

    run = os.path.abspath(run_dir) if run_dir else tempfile.mkdtemp(prefix="tandem-run-")
    work = os.path.join(run, "input")
    os.makedirs(work, exist_ok=True)
    archive = os.path.join(work, "model.keras")
    model.save(archive)
    samples = _write(os.path.join(work, "data"), model, x, y, sample_weight, "")
    if samples < 1:
        raise ValueError("x: no samples")
    command = [_binary(tandem), "train", "--model", archive, "--data", os.path.join(work, "data"), "--out", run,
               "--batch-size", str(int(batch_size)), "--epochs", str(int(epochs))]
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data: expected (x_val, y_val) or (x_val, y_val, sample_weight_val)")
        vx, vy = validation_data[0], validation_data[1]
        vw = validation_data[2] if len(validation_data) == 3 else None
        _write(os.path.join(work, "validation"), model, vx, vy, vw, "validation_data: ")
        command += ["--val-data", os.path.join(work, "validation")]
    command += _flags(flags)
    if ranks > 1 or hostfile:
        launcher = [mpirun, "-np", str(int(ranks)), "-x", "OPENBLAS_NUM_THREADS=1"]
        if os.geteuid() == 0:
            launcher.append("--allow-run-as-root")
        if hostfile:
            launcher += ["--hostfile", hostfile]
        elif ranks > (os.cpu_count() or 1):
            launcher += ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
        command = launcher + command

    # Progress comes on stderr: pass it through as it arrives, keep the end for errors.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    tail = []
    for line in process.stderr:
        tail = (tail + [line])[-20:]
        if verbose:
            sys.stderr.write(line)
            sys.stderr.flush()
    output = process.stdout.read()
    if process.wait() != 0:
        message = "".join(l for l in tail if "error" in l.lower()) or "".join(tail) or output
        raise TandemError(f"tandem train failed (exit {process.returncode}): {message.strip()}")
    if verbose and output:
        sys.stderr.write(output)

    trained = keras.saving.load_model(os.path.join(run, "model.keras"))
    model.set_weights(trained.get_weights())
    history = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            for key, value in json.loads(line).items():
                if key not in ("epoch", "step"):
                    history.setdefault(key, []).append(value)
    return _History(trained, history, run, epochs)


class _History:
    """Like keras.callbacks.History (`.history`, `.epoch`, `.params`, `.model`), plus `.run_dir`;
    unpacks as (trained_model, history_dict)."""

    def __init__(self, model, history, run_dir, epochs):
        self.model, self.history, self.run_dir = model, history, run_dir
        self.epoch = list(range(len(next(iter(history.values()), []))))
        self.params = {"epochs": epochs, "verbose": 1}

    def __iter__(self):
        return iter((self.model, self.history))

    def __repr__(self):
        return f"<tandem_keras History: {len(self.epoch)} epochs, run {self.run_dir}>"
