#!/usr/bin/python3
"""bench/compare_optuna.py -- Optuna (TPE + Hyperband) on PyTorch, the task of
examples/fashion_pbt.lua (mlp) or examples/fashion_cnn_pbt.lua (cnn), for
bench/compare.lua.

  /usr/bin/python3 bench/compare_optuna.py --task mlp|cnn --seed S \\
      --population N --steps S --perm FILE

prints one JSON line {"val", "test", "seconds", "minibatches", "trials",
"completed", "h", "check"} on stdout (Optuna's log is quiet; errors go to
stderr with a non-zero exit status).

The same task as pbt's experiment files:
- data: Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist, gzipped
  IDX), pixels v -> float32(v * (1/255)) as pbt's loader computes them (C:
  a double product rounded to float32; no further normalisation), labels
  0..9 (pbt's are 1..10);
- the split: FILE holds the permutation that pbt's data.split draws (raw
  little-endian float64, 1-based, as data.randperm returns it): its first
  round(60000 * 0.1) = 6000 indices are the validation part, the rest the
  training part, both in that order; the cnn task trains on the first 12000
  images of the training part and is scored on the first 3000 of the
  validation part;
- the model (PyTorch's default initialisation), the search space, SGD with
  lr / momentum / weight_decay (PyTorch's and pbt's formulas are the same:
  d = g + wd * p; buf = m * buf + d; p -= lr * buf), the mean cross entropy;
- a step is STEP_BATCHES minibatches (mlp 100, cnn 50): a fresh permutation
  of the training part per step, batch b (from 0) = order[(b * bs) % (N - bs)
  : ... + bs];
- validation accuracy (batches of 500, no grad) every 2 steps (pbt's ready
  interval) and after the last step, reported to the trial with
  trial.report(acc, step), then trial.should_prune().

The search: TPESampler(seed=S), HyperbandPruner(min_resource=2,
max_resource=steps, reduction_factor=3), torch.manual_seed(S),
torch.set_num_threads(2) (OpenBLAS at one thread, see below).  Trials run one after another until the budget --
the minibatches of the pbt run, population * steps * STEP_BATCHES -- is
spent; a trial still training when it runs out stops there and counts as
failed (not completed).  The result is study.best_trial among the completed
trials: "val" its last reported validation accuracy, "test" the accuracy of
that trial's final model on the 10000 test images.  "seconds" is the wall
time of the search (not the imports nor the data loading), "minibatches"
those trained, "trials" those started, "completed" those that ran every
step.  "check" lets bench/compare.lua check the split: the sums of the
first validation and first training images, and sum_i i * label_i over the
whole validation part (i from 1, labels 0..9).
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

# torch's own threads (set_num_threads below) and OpenBLAS's pool fight for
# the cores: with both at 2, Debian's torch 1.13 trains the MLP's minibatches
# 4 times slower than with OpenBLAS at 1 (pbt's runs keep OpenBLAS at one
# thread per worker too).  Set before numpy and torch load OpenBLAS.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
VAL_FRACTION = 0.1
EVAL_EVERY = 2  # pbt.ready.every(2)
TASKS = {
    "mlp": dict(step_batches=100, lr=(1e-3, 0.5), batch_sizes=[16, 32, 64, 128, 256],
                train=None, val=None),
    "cnn": dict(step_batches=50, lr=(1e-3, 0.3), batch_sizes=[32, 64, 128],
                train=12000, val=3000),
}


def fail(msg):
    print("compare_optuna: " + msg, file=sys.stderr)
    sys.exit(2)


def read_idx(path):
    """An IDX file of unsigned bytes (gzipped) as a numpy array of its shape."""
    try:
        with gzip.open(path, "rb") as f:
            b = f.read()
    except OSError as e:
        fail(f"{path}: {e} (install Debian's dataset-fashion-mnist)")
    if len(b) < 4 or b[0] != 0 or b[1] != 0 or b[2] != 0x08:
        fail(f"{path}: not an IDX file of unsigned bytes")
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(task, perm_path):
    """x_train, y_train, x_val, y_val, x_test, y_test as numpy arrays, and the check."""
    # pbt's loader: a table of the 256 values, (double)v * (1/255) + 0 rounded to float32
    table = (np.arange(256, dtype=np.float64) * (1.0 / 255) + 0.0).astype(np.float32)

    def images(name):
        raw = read_idx(os.path.join(DATA_DIR, name))
        x = table[raw]
        return x.reshape(-1, 784) if task == "mlp" else x.reshape(-1, 1, 28, 28)

    def labels(name):
        return read_idx(os.path.join(DATA_DIR, name)).astype(np.int64)

    x, y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
    x_test, y_test = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")
    n = x.shape[0]
    perm = np.fromfile(perm_path, dtype="<f8")
    if perm.shape[0] != n:
        fail(f"{perm_path}: {perm.shape[0]} indices for {n} images")
    idx = perm.astype(np.int64)
    if not np.array_equal(np.sort(idx), np.arange(1, n + 1)) or not np.array_equal(idx, perm):
        fail(f"{perm_path}: not a permutation of 1..{n}")
    idx -= 1
    nval = math.floor(n * VAL_FRACTION + 0.5)  # data.split: round(n * fraction)
    vidx, tidx = idx[:nval], idx[nval:]
    check = {
        "val_first_sum": float(x[vidx[0]].astype(np.float64).sum()),
        "train_first_sum": float(x[tidx[0]].astype(np.float64).sum()),
        "val_labels_hash": int((np.arange(1, nval + 1) * y[vidx]).sum()),
    }
    t = TASKS[task]
    if t["train"] is not None:
        tidx, vidx = tidx[:t["train"]], vidx[:t["val"]]
    return x[tidx], y[tidx], x[vidx], y[vidx], x_test, y_test, check


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--population", required=True, type=int)
    ap.add_argument("--steps", required=True, type=int)
    ap.add_argument("--perm", required=True)
    a = ap.parse_args()
    if a.population < 1 or a.steps < 1:
        fail("--population and --steps must be positive")
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        import optuna
    except ImportError as e:
        fail(f"{e}: needs Debian's python3-torch and python3-optuna "
             "(apt-get install python3-torch python3-optuna), run with /usr/bin/python3")
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    task = TASKS[a.task]
    sb = task["step_batches"]

    xt, yt, xv, yv, xs, ys, check = load(a.task, a.perm)
    x_train, y_train = torch.from_numpy(np.ascontiguousarray(xt)), torch.from_numpy(yt)
    x_val, y_val = torch.from_numpy(np.ascontiguousarray(xv)), torch.from_numpy(yv)
    x_test, y_test = torch.from_numpy(np.ascontiguousarray(xs)), torch.from_numpy(ys)
    n = x_train.shape[0]

    def build():
        if a.task == "mlp":
            return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def accuracy(model, x, y):
        correct = 0
        with torch.no_grad():
            for i in range(0, x.shape[0], 500):
                correct += int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
        return correct / x.shape[0]

    budget = a.population * a.steps * sb
    # a fixed study name: Optuna's Hyperband pruner puts trial k in the
    # bracket crc32(f"{study_name}_{k}") picks, and an unnamed study gets a
    # random name (uuid): the same seed would not give the same search
    study = optuna.create_study(
        study_name=f"pbt-compare-{a.task}-p{a.population}-s{a.steps}-seed{a.seed}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=a.seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=2, max_resource=a.steps,
                                              reduction_factor=3))
    used = trials = completed = 0
    best_value, best_models = None, {}  # trial number -> model, for the completed trials tied best
    t0 = time.perf_counter()
    while used < budget:
        trial = study.ask()
        trials += 1
        lr = trial.suggest_float("lr", *task["lr"], log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.99)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        bs = trial.suggest_categorical("batch_size", task["batch_sizes"])
        model = build()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        state, last = TrialState.COMPLETE, None
        for step in range(1, a.steps + 1):
            order = torch.randperm(n)
            for b in range(sb):
                if used >= budget:
                    state = TrialState.FAIL  # the budget ran out in this trial
                    break
                s = (b * bs) % (n - bs)
                idx = order[s:s + bs]
                opt.zero_grad()
                F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
                opt.step()
                used += 1
            if state != TrialState.COMPLETE:
                break
            if step % EVAL_EVERY == 0 or step == a.steps:
                last = accuracy(model, x_val, y_val)
                trial.report(last, step)
                if step < a.steps and trial.should_prune():
                    state = TrialState.PRUNED
                    break
        if state == TrialState.COMPLETE:
            study.tell(trial, last)
            completed += 1
            if best_value is None or last > best_value:
                best_value, best_models = last, {}
            if last == best_value:
                best_models[trial.number] = model
        else:
            study.tell(trial, state=state)
    seconds = time.perf_counter() - t0
    if completed == 0:
        fail(f"no trial completed within the budget of {budget} minibatches")
    best = study.best_trial
    if best.number not in best_models:
        fail(f"study.best_trial is trial {best.number} ({best.value}), not one this script kept "
             f"({sorted(best_models)}, {best_value})")
    test = accuracy(best_models[best.number], x_test, y_test)
    print(json.dumps({
        "val": best.value, "test": test, "seconds": seconds, "minibatches": used,
        "trials": trials, "completed": completed, "h": best.params, "check": check,
    }), flush=True)


if __name__ == "__main__":
    main()
