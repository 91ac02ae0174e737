#!/usr/bin/env python3
"""PyTorch 2 on CPU as the second peer of the speed matrix (scripts/bench.sh --peers keras,torch): the
image families of bench_families.py written in torch.nn, trained with one Adam on the same weighted total
loss, one thread, channels_last (PyTorch's fastest CPU layout for convolutions, run by its bundled oneDNN).

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


def speed(family, batch, intervals, seconds, memory_format):
    make, size = FAMILIES[family]
    torch.manual_seed(1)
    model = TwoHeads(*make()).to(memory_format=memory_format)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
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
    return {"samples_per_second": sorted(rates)[len(rates) // 2], "intervals": rates, "steps_per_interval": n // batch,
            "torch": torch.__version__, "memory_format": str(memory_format).replace("torch.", ""),
            "mkldnn": torch.backends.mkldnn.is_available()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--family", required=True, choices=sorted(FAMILIES))
    p.add_argument("--batch-size", type=int, default=32); p.add_argument("--intervals", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last")
    a = p.parse_args()
    memory_format = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    result = speed(a.family, a.batch_size, a.intervals, a.seconds, memory_format)
    result.update({"family": a.family, "batch_per_rank": a.batch_size})
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
