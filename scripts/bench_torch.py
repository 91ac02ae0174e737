#!/usr/bin/env python3
"""PyTorch 2 on CPU as the second peer of the speed matrix (scripts/bench.sh --peers keras,torch): every
family of bench_families.py written in torch.nn with the same sizes, trained with one Adam (fused: PyTorch's
fastest CPU update) on the same weighted total loss, one thread; the image families channels_last (PyTorch's
fastest CPU layout for convolutions, run by its bundled oneDNN). Parameter counts equal Keras's but for
PyTorch's LSTM, which has two bias vectors where Keras has one (4·units more per LSTM).

  bench_torch.py --family F --batch-size B [--intervals 5] [--memory-format channels_last|contiguous]

Prints one JSON line as bench_families.py's keras mode does: samples/s of each timed interval (about
--seconds each, one pass over the data) and their median. Run it under `taskset -c 0`.
"""
import argparse, json, sys, time

import torch
from torch import nn

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


def make_divisible(v, divisor=8):
    """keras.applications.mobilenet_v2's channel rounding."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU6, pad=None):
    layers = []
    if pad is not None:
        layers.append(nn.ZeroPad2d(pad))
    layers += [nn.Conv2d(cin, cout, k, stride, padding=(k // 2 if pad is None else 0), groups=groups, bias=False),
               nn.BatchNorm2d(cout, eps=1e-3, momentum=0.001)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Keras's _inverted_res_block: 1×1 expand (not in the first block), 3×3 depthwise (stride 2 after
    Keras's correct_pad, else same), 1×1 project, residual when shapes allow."""

    def __init__(self, cin, cout, stride, expansion, first):
        super().__init__()
        hidden = cin * expansion
        layers = [] if first else [conv_bn(cin, hidden, 1)]
        layers.append(conv_bn(hidden, hidden, 3, stride, groups=hidden, pad=(0, 1, 0, 1) if stride == 2 else None))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2(alpha=0.35):
    first = make_divisible(32 * alpha)
    layers = [conv_bn(3, first, 3, 2, pad=(0, 1, 0, 1))]
    cin, first_block = first, True
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        cout = make_divisible(int(c * alpha))
        for i in range(n):
            layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, first_block))
            cin, first_block = cout, False
    layers.append(conv_bn(cin, 1280, 1))  # Keras: 1280 filters for alpha ≤ 1
    return nn.Sequential(*layers), 1280


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride, act=nn.ReLU), conv_bn(cout, cout, 3, act=None))

    def forward(self, x):
        return torch.relu(self.skip(x) + self.body(x))


def resnet_small():
    layers = [conv_bn(3, 32, 3, act=nn.ReLU)]
    cin = 32
    for filters, stride in [(32, 1), (64, 2), (128, 2)]:
        layers.append(Residual(cin, filters, stride))
        cin = filters
    return nn.Sequential(*layers), cin


class TwoHeads(nn.Module):
    """bench_families.age_and_kind: global average pooling, an `age` regression and a 10-class `kind`."""

    def __init__(self, trunk, width):
        super().__init__()
        self.trunk, self.age, self.kind = trunk, nn.Linear(width, 1), nn.Linear(width, 10)

    def forward(self, x):
        pooled = self.trunk(x).mean(dim=(2, 3))
        return self.age(pooled), self.kind(pooled)


FAMILIES = {"cnn_resnet_32": (resnet_small, 32), "cnn_resnet_64": (resnet_small, 64),
            "cnn_mobilenetv2_32": (mobilenet_v2, 32), "cnn_mobilenetv2_64": (mobilenet_v2, 64)}


# The text and tabular families (bench_families.py): token ids [B, 100] in; Keras's defaults where PyTorch's
# differ (LayerNorm-free; BatchNormalization eps 1e-3, momentum 0.01 in PyTorch's convention).
class Headline(nn.Module):
    """Embedding 10000×512 → LSTM 32 → aux head; concatenate aux_input(5) → 3 × Dense 64 relu → main head."""

    def __init__(self):
        super().__init__()
        self.embedding, self.lstm = nn.Embedding(10000, 512), nn.LSTM(512, 32, batch_first=True)
        self.aux = nn.Linear(32, 1)
        self.dense = nn.Sequential(nn.Linear(37, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64),
                                   nn.ReLU())
        self.main = nn.Linear(64, 1)

    def forward(self, tokens, aux_input):
        _, (h, _) = self.lstm(self.embedding(tokens))
        h = h[-1]
        return self.main(self.dense(torch.cat([h, aux_input], dim=1))), self.aux(h)


class TopicAndFlag(nn.Module):
    """bench_families.topic_and_flag's heads (5-class `topic`, binary `flag`) on a text trunk."""

    def __init__(self, trunk, width):
        super().__init__()
        self.trunk, self.topic, self.flag = trunk, nn.Linear(width, 5), nn.Linear(width, 1)

    def forward(self, tokens):
        x = self.trunk(tokens)
        return self.topic(x), self.flag(x)


class LastState(nn.Module):
    """A recurrent layer's last output (Keras's return_sequences=False)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0][:, -1]


class Sequences(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class ConvOverTime(nn.Module):
    """Conv1D 64→128, kernel 3, same, relu, channels-last in and out (Keras's layout)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(64, 128, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)


class MaxOverTime(nn.Module):
    def forward(self, x):
        return x.max(dim=1).values


class Tabular(nn.Module):
    """200 features → Dense 512 relu → BatchNormalization → Dense 256 relu → Dropout 0.2 → three heads."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(200, 512), nn.ReLU(), nn.BatchNorm1d(512, eps=1e-3, momentum=0.01),
                                   nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2))
        self.churn, self.segment, self.spend = nn.Linear(256, 1), nn.Linear(256, 10), nn.Linear(256, 1)

    def forward(self, features):
        x = self.trunk(features)
        return self.churn(x), self.segment(x), self.spend(x)


class Encoder(nn.Module):
    """bench_families.transformer's trunk: Embedding 10000×128 → 4 post-norm encoder layers (4 heads, 512 relu,
    Keras's LayerNormalization epsilon 1e-3, no dropout) → the mean over tokens."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10000, 128)
        layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, layer_norm_eps=1e-3, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)

    def forward(self, tokens):
        return self.encoder(self.embedding(tokens)).mean(dim=1)


def text(trunk, width, flag_weight):
    return lambda: (TopicAndFlag(trunk(), width), flag_weight)


TEXT = {
    "gru_classifier": text(lambda: nn.Sequential(nn.Embedding(20000, 128), LastState(nn.GRU(128, 64, batch_first=True))),
                           64, 0.5),
    "conv_bilstm": text(lambda: nn.Sequential(nn.Embedding(10000, 64), ConvOverTime(),
                                              Sequences(nn.LSTM(128, 32, batch_first=True, bidirectional=True)),
                                              MaxOverTime()), 64, 0.3),
    "stacked_lstm": text(lambda: nn.Sequential(nn.Embedding(5000, 64), Sequences(nn.LSTM(64, 64, batch_first=True)),
                                               LastState(nn.LSTM(64, 64, batch_first=True))), 64, 0.2),
    "transformer": text(lambda: nn.Sequential(Encoder()), 128, 0.3),
}
# Tokens per sample, by family (100 unless named).
LENGTHS = {"transformer": 128}


def timed(epoch, data, batch, intervals, seconds):
    """samples/s of `intervals` passes over random data of about `seconds` each (at least 4 steps), after a
    warm-up pass; `epoch(*data(n))` trains one pass over n samples."""
    probe = data(4 * batch)
    epoch(*probe)  # warm-up; not timed
    started = time.time()
    epoch(*probe)
    rate = 4 * batch / (time.time() - started)
    n = batch * max(4, int(rate * seconds / batch))
    full = data(n)
    epoch(*full)
    rates = []
    for _ in range(intervals):
        started = time.time()
        epoch(*full)
        rates.append(n / (time.time() - started))
    return {"samples_per_second": sorted(rates)[len(rates) // 2], "intervals": rates, "steps_per_interval": n // batch}


def text_speed(family, batch, intervals, seconds):
    """The non-image families: one timed interval is one pass over random data of about `seconds`."""
    torch.manual_seed(1)
    bce, ce, mse = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss(), nn.MSELoss()
    if family == "headline":
        model = Headline()

        def data(n):
            return (torch.randint(0, 10000, (n, 100)), torch.randn(n, 5)), (torch.randint(0, 2, (n, 1)).float(),
                                                                            torch.randint(0, 2, (n, 1)).float())

        def loss(out, y):
            return bce(out[0], y[0]) + 0.2 * bce(out[1], y[1])
    elif family == "tabular":
        model = Tabular()

        def data(n):
            return (torch.randn(n, 200),), (torch.randint(0, 2, (n, 1)).float(), torch.randint(0, 10, (n,)),
                                            torch.randn(n, 1))

        def loss(out, y):
            return bce(out[0], y[0]) + 0.5 * ce(out[1], y[1]) + 0.2 * mse(out[2], y[2])
    else:
        model, flag_weight = TEXT[family]()
        first = model.trunk[0]
        vocab = (first.embedding if isinstance(first, Encoder) else first).num_embeddings
        length = LENGTHS.get(family, 100)

        def data(n):
            return (torch.randint(0, vocab, (n, length)),), (torch.randint(0, 5, (n,)),
                                                          torch.randint(0, 2, (n, 1)).float())

        def loss(out, y):
            return ce(out[0], y[0]) + flag_weight * bce(out[1], y[1])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)

    def epoch(x, y):
        n = y[0].shape[0]
        for i in range(0, n - batch + 1, batch):
            optimizer.zero_grad(set_to_none=True)
            l = loss(model(*(t[i:i + batch] for t in x)), [t[i:i + batch] for t in y])
            l.backward()
            optimizer.step()

    return {**timed(epoch, data, batch, intervals, seconds),
            "torch": torch.__version__, "memory_format": "contiguous", "mkldnn": torch.backends.mkldnn.is_available(),
            "parameters": sum(p.numel() for p in model.parameters())}


def speed(family, batch, intervals, seconds, memory_format):
    make, size = FAMILIES[family]
    torch.manual_seed(1)
    model = TwoHeads(*make()).to(memory_format=memory_format)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    mse, ce = nn.MSELoss(), nn.CrossEntropyLoss()

    def data(n):
        x = torch.randn(n, 3, size, size).contiguous(memory_format=memory_format)
        return x, torch.randn(n, 1), torch.randint(0, 10, (n,))

    def epoch(x, age, kind):
        for i in range(0, x.shape[0] - batch + 1, batch):
            optimizer.zero_grad(set_to_none=True)
            a, k = model(x[i:i + batch])
            loss = mse(a, age[i:i + batch]) + 0.5 * ce(k, kind[i:i + batch])
            loss.backward()
            optimizer.step()

    return {**timed(epoch, data, batch, intervals, seconds),
            "torch": torch.__version__, "memory_format": str(memory_format).replace("torch.", ""),
            "mkldnn": torch.backends.mkldnn.is_available()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--family", required=True, choices=sorted(FAMILIES) + sorted(TEXT) + ["headline", "tabular"])
    p.add_argument("--batch-size", type=int, default=32); p.add_argument("--intervals", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last")
    a = p.parse_args()
    memory_format = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    if a.family in FAMILIES:
        result = speed(a.family, a.batch_size, a.intervals, a.seconds, memory_format)
    else:
        result = text_speed(a.family, a.batch_size, a.intervals, a.seconds)
    result.update({"family": a.family, "batch_per_rank": a.batch_size})
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
