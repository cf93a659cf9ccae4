#!/usr/bin/python3
"""bench/mlp_torch.py -- the training steps of bench/mlp.lua done with PyTorch.

Same architectures, batches, dtype (float32), optimizer (SGD lr 0.01,
momentum 0.9) and thread count (torch.set_num_threads(THREADS), default 1;
bench/mlp.lua runs pbt with OPENBLAS_NUM_THREADS set to the same number).
Prints "case<TAB>median seconds per step" per case.  Run by bench/mlp.lua;
use /usr/bin/python3 (Debian's, which has python3-torch).
"""
import os
import sys
import time

import torch
import torch.nn as nn

threads = int(os.environ.get("THREADS", "1"))
torch.set_num_threads(threads)
torch.manual_seed(1)


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def step_fn(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def timeit(fn, min_time=0.3):
    warm = time.perf_counter() + 0.2  # as bench/mlp.lua: 0.2 s of warm-up
    while time.perf_counter() < warm:
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 20:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


REPS = 1000


def micro_mul(requires_grad):
    def make():
        a = torch.rand(10, requires_grad=requires_grad)
        b = torch.rand(10)

        def run():
            for _ in range(REPS):
                a * b
        return run
    return make


def micro_chain():
    x = torch.rand(10, requires_grad=True)
    w, b, c = torch.rand(10), torch.rand(10), torch.rand(10)

    def run():
        for _ in range(REPS):
            x.grad = None
            ((x * w + b).tanh() * c).sum().backward()
    return run


MICRO = {
    "mul of 10 elements, nothing requires grad": micro_mul(False),
    "mul of 10 elements, recorded (x requires grad)": micro_mul(True),
    "((x*w + b):tanh() * c):sum() forward and backward, 10 elements": micro_chain,
}

CASES = {}
for b in (32, 128):
    CASES[f"mlp 784-256-256-10 batch {b}"] = (mlp, (b, 784))
CASES["cnn 1x28x28 batch 64"] = (cnn, (64, 1, 28, 28))

for line in sys.stdin:
    name = line.rstrip("\n")
    if name in MICRO:
        print(f"{name}\t{timeit(MICRO[name]()) / REPS:.9g}", flush=True)
        continue
    if name not in CASES:
        continue
    make, shape = CASES[name]
    model = make()
    x = torch.rand(*shape)
    y = torch.randint(0, 10, (shape[0],))
    print(f"{name}\t{timeit(step_fn(model, x, y)):.9g}", flush=True)
