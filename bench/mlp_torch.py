#!/usr/bin/python3
"""bench/mlp_torch.py -- the PyTorch side of bench/mlp.lua, a long-lived server.

Subnormal floats are flushed to zero (torch.set_flush_denormal(True)), as on
the other sides.  Same architectures, batches, dtype (float32), optimizer (SGD lr 0.01,
momentum 0.9, PyTorch's default opt.zero_grad(), which sets the gradients to
None) and thread count (torch.set_num_threads(THREADS), default 1;
bench/mlp.lua runs pbt with OPENBLAS_NUM_THREADS set to the same number).

Reads one request per line on stdin and answers each with one line on stdout:
  info                    torch's version, threads and flush mode
  CASE                    the median seconds per training step of the case
                          (its model, data and optimizer are made at the
                          first request and kept for the later ones)
  MICRO                   the median seconds per repetition of a small-tensor
                          autograd case (made at its first request, kept)
  tail STEPS WARM CASE    a fresh model of CASE: WARM untimed steps, then the
                          seconds of each of STEPS steps, separated by spaces
Anything else is answered "error: ...".  A measurement times as bench/mlp.lua
and bench/mlp_floor.c do: 0.2 s of warm-up calls, then calls each timed for
at least 0.3 s and at least 20 calls; the median (the mean of the two middle
ones for an even count).  Use /usr/bin/python3 (Debian's, with python3-torch).
"""
import os
import sys
import time

import torch
import torch.nn as nn

threads = int(os.environ.get("THREADS", "1"))
torch.set_num_threads(threads)
# as every side of bench/mlp.lua: subnormal floats count as zero (the momentum
# buffers of units that get no gradient decay through them, and arithmetic
# on them takes a microcode assist: each side's speed would depend on how
# many of them its trajectory happens to make)
FLUSH = torch.set_flush_denormal(True)
torch.manual_seed(1)


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


CASES = {}
for b in (32, 128):
    CASES[f"mlp 784-256-256-10 batch {b}"] = (mlp, (b, 784))
CASES["cnn 1x28x28 batch 64"] = (cnn, (64, 1, 28, 28))


def step_fn(name):
    """A training step of a fresh model of case name."""
    make, shape = CASES[name]
    model = make()
    x = torch.rand(*shape)
    y = torch.randint(0, 10, (shape[0],))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def timeit(fn, min_time=0.3):
    warm = time.perf_counter() + 0.2  # as bench/mlp.lua: 0.2 s of warm-up
    while True:
        fn()
        if time.perf_counter() > warm:
            break
    times = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 20:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


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


def tail(steps, warm, name):
    step = step_fn(name)
    for _ in range(warm):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return " ".join(f"{t:.9g}" for t in times)


kept = {}  # case name -> its step (or micro closure), made at the first request


def answer(req):
    if req == "info":
        return (f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
                f"set_flush_denormal(True) = {FLUSH}")
    if req in CASES:
        if req not in kept:
            kept[req] = step_fn(req)
        return f"{timeit(kept[req]):.9g}"
    if req in MICRO:
        if req not in kept:
            kept[req] = MICRO[req]()
        return f"{timeit(kept[req]) / REPS:.9g}"
    words = req.split(" ", 3)
    if len(words) == 4 and words[0] == "tail" and words[3] in CASES:
        try:
            steps, warm = int(words[1]), int(words[2])
        except ValueError:
            steps = warm = -1
        if steps > 0 and warm >= 0:
            return tail(steps, warm, words[3])
    return f"error: unknown request {req!r}"


for line in sys.stdin:
    print(answer(line.rstrip("\n")), flush=True)
