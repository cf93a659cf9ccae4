#!/usr/bin/python3
"""bench/tensor_numpy.py -- the work of bench/tensor.lua done with numpy:
the numpy side of that benchmark, a long-lived process.

Reads case names on stdin, one a line, as bench/tensor.lua names them, and
answers each with one line on stdout: the seconds per call, or "-" for a
case it does not know.  The arrays of a case are made at its first request
and kept until the end, so that rounds of the same case time calls, not
allocations.

A call is timed as bench/tensor.lua and bench/blas_direct.c time theirs: one
warm-up call, then batches of 1, 4, 16... calls until a batch takes more
than 0.02 s, then 5 batches of that many calls; the answer is the median of
the 5 batches' seconds per call.  Use /usr/bin/python3 (Debian's, which has
python3-numpy).
"""
import re
import sys
import time

import numpy as np

rng = np.random.default_rng(1)


def rand(dtype, *shape):
    return rng.random(shape, dtype=np.float64).astype(dtype)


def timeit(fn):
    fn()
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 > 0.02:
            break
        reps *= 4
    per = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        per.append((time.perf_counter() - t0) / reps)
    per.sort()
    return per[2]


def softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


UNARY = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "exp": lambda a, b: np.exp(a),
    "log": lambda a, b: np.log(a),
    "tanh": lambda a, b: np.tanh(a),
    "sigmoid": lambda a, b: 1.0 / (1.0 + np.exp(-a)),
    "relu": lambda a, b: np.maximum(a, 0),
    "sqrt": lambda a, b: np.sqrt(a),
    "sum": lambda a, b: a.sum(),
    "max": lambda a, b: a.max(),
}


def make(name):
    m = re.match(r"matmul (float32|float64) (\d+)x\d+$", name)
    if m:
        a, b = rand(m[1], int(m[2]), int(m[2])), rand(m[1], int(m[2]), int(m[2]))
        return lambda: a @ b
    if name == "add float32 10 elements (a + b)":
        a, b = rand("float32", 10), rand("float32", 10)
        return lambda: a + b
    m = re.match(r"(\w+) float32 (1e6|1e7)$", name)
    if m and m[1] in UNARY:
        n = int(float(m[2]))
        a, b = rand("float32", n), rand("float32", n)
        f = UNARY[m[1]]
        return lambda: f(a, b)
    m = re.match(r"add_ in place float32 (1e6|1e7)$", name)
    if m:
        a, b = rand("float32", int(float(m[1]))), rand("float32", int(float(m[1])))

        def f():
            np.add(a, b, out=a)
        return f
    m = re.match(r"axpy add_\(x, 0.5\) float32 (1e6|1e7)$", name)
    if m:
        a, b = rand("float32", int(float(m[1]))), rand("float32", int(float(m[1])))
        half = np.float32(0.5)

        def f():
            a.__iadd__(half * b)
        return f
    m = re.match(r"clone float32 (1e6|1e7)$", name)
    if m:
        a = rand("float32", int(float(m[1])))
        return lambda: a.copy()
    if name == "softmax(2) float32 1000x1000":
        a = rand("float32", 1000, 1000)
        return lambda: softmax(a)
    if name == "sum(2) float32 1000x1000":
        a = rand("float32", 1000, 1000)
        return lambda: a.sum(axis=1)
    if name == "add broadcast [1000,1000]+[1000] float32":
        a, b = rand("float32", 1000, 1000), rand("float32", 1000)
        return lambda: a + b
    if name == "transposed copy contiguous() float32 1000x1000":
        a = rand("float32", 1000, 1000).T
        return lambda: np.ascontiguousarray(a)
    return None


def serve():
    made = {}  # case name -> the call to time, its arrays kept in the closure
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        name = line.rstrip("\n")
        if name not in made:
            made[name] = make(name)
        fn = made[name]
        print("-" if fn is None else f"{timeit(fn):.9g}", flush=True)


serve()
