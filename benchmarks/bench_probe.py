"""Does the probe's C, and so its held-out accuracy, depend on the order of the training rows?
And what does starting each fold's path at the class priors save?

The probe before issue 23 (``old_probe()``, rebuilt here: C by accuracy on one shuffled
stratified 3-fold split) against ``default_probe()`` (C by log-loss over 3 repeats of 3
stratified folds, drawn after the rows are put in a canonical order). On synthetic features
(Gaussian classes of random means, ``signal`` times a standard normal, in unit noise) it
prints, per case and measured in one run: the fit time of each (best of 2) and the ratio new /
old; over ``--runs`` row permutations, in how many runs C differs from the unpermuted fit and
the SD of held-out accuracy (2,000 test rows); and, since a permutation cannot move the new
probe, how much its C and accuracy move when its folds are drawn with ``--runs`` other seeds,
for each number of repeats in ``--repeats`` (what a reshuffle did to the old probe, and what
fewer repeats would cost). The machine's load average is printed before and after.

``zero`` is issue 23's probe as it was up to issue 25: the same folds and scoring in
scikit-learn's ``LogisticRegressionCV``, whose paths start at zero; ``default_probe()`` starts
them at the log class frequencies (``LogisticRegressionPathCV``). With ``--banking77`` the three
are compared per layer.

With ``--banking77`` it measures the report's own features instead: BANKING77 at the report's
defaults (900 texts, the first replicate's 7 training blocks, 3 test blocks) at every layer of
SmolLM2-135M, on the probe's footing, from one forward pass. Per layer, the old probe and the
new one at each of ``--repeats``: C, held-out accuracy, L-BFGS iterations (summed over folds
and Cs: a cost that does not depend on the machine's load) and seconds, with the totals over
the layers that the report's probe costs; then, at ``--layers``, the spread over ``--runs``
row permutations (old) and fold seeds (new).

    python benchmarks/bench_probe.py [--case N CLASSES SIGNAL ...] [--runs 20]
                                     [--repeats 1 2 3 5]
    python benchmarks/bench_probe.py --banking77 [--repeats 3 5] [--runs 8] [--layers 4 15 30]
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ntps import default_probe
from sklearn_ntps.choice.probe import PROBE_CS, _OneBLASThreadPipeline, _ProbePipeline

D = 576
N_TEST = 2000
# (rows, classes, signal): a signal that keeps C off the grid's edges; the last has BANKING77's
# 77 classes (the report trains on about 630 of its texts: --banking77).
CASES = [(100, 5, 0.10), (400, 20, 0.12), (1000, 20, 0.10), (300, 77, 0.30)]


def old_probe():
    """``default_probe()`` before issue 23: C by accuracy on one shuffled 3-fold split."""
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    return _OneBLASThreadPipeline(make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=list(PROBE_CS), cv=cv, max_iter=1000, scoring="accuracy", **_l2_only())).steps)


def zero_start_probe():
    """``default_probe()`` of issues 23-25: the same folds and scoring, paths started at zero."""
    probe = default_probe()
    lr = probe[-1]
    return _ProbePipeline(make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=list(PROBE_CS), cv=lr.cv, max_iter=1000, scoring="neg_log_loss", n_jobs=lr.n_jobs,
        **_l2_only())).steps)


def _l2_only() -> dict:
    """Pure L2 and plain attributes, said the way this scikit-learn version wants it said."""
    defaults = {k: p.default for k, p in
                inspect.signature(LogisticRegressionCV).parameters.items()}
    out = {"l1_ratios": (0.0,)} if defaults.get("l1_ratios") == "warn" else {}
    if "use_legacy_attributes" in defaults:
        out["use_legacy_attributes"] = False
    return out


def new_probe(n_repeats=None, seed=0):
    probe = default_probe()
    if n_repeats is not None:
        probe[-1].set_params(cv=RepeatedStratifiedKFold(n_splits=3, n_repeats=n_repeats,
                                                        random_state=seed))
    return probe


def data(n, k, signal, seed=0):
    rng = np.random.default_rng(seed)
    means = signal * rng.normal(size=(k, D))
    y, y_test = np.arange(n) % k, np.arange(N_TEST) % k
    return (rng.normal(size=(n, D)) + means[y], y,
            rng.normal(size=(N_TEST, D)) + means[y_test], y_test)


def fit(probe, X, y):
    start = time.perf_counter()
    fitted = clone(probe).fit(X, y)
    return fitted, time.perf_counter() - start


def c_of(fitted):
    return float(np.ravel(fitted[-1].C_)[0])


def moved(fits, reference, X_test, y_test):
    """How many fits chose another C than ``reference``, which Cs they chose, and the mean and
    SD of their held-out accuracy in points."""
    accuracy = [100 * f.score(X_test, y_test) for f in fits]
    cs = [c_of(f) for f in fits]
    chosen = ", ".join(f"{c:g} x{cs.count(c)}" for c in sorted(set(cs)))
    return (f"C differs in {sum(c != c_of(reference) for c in cs)} of {len(fits)} ({chosen}); "
            f"held-out accuracy {np.mean(accuracy):.1f}%, SD {np.std(accuracy, ddof=1):.2f} "
            "points")


def run_case(n, k, signal, runs, repeats):
    X, y, X_test, y_test = data(n, k, signal)
    print(f"n={n} d={D} classes={k} signal={signal:g}")
    times, base = {}, {}
    for name, make in (("old", old_probe), ("new", default_probe)):
        out = [fit(make(), X, y) for _ in range(2)]
        base[name], times[name] = out[0][0], min(t for _, t in out)
    print(f"  fit, best of 2: old {times['old']:.2f} s (C={c_of(base['old']):g}), "
          f"new {times['new']:.2f} s (C={c_of(base['new']):g}); ratio new/old "
          f"{times['new'] / times['old']:.2f}")
    rng = np.random.default_rng(1)
    perms = [rng.permutation(n) for _ in range(runs)]
    for name, make in (("old", old_probe), ("new", default_probe)):
        fits = [fit(make(), X[p], y[p])[0] for p in perms]
        print(f"  {name}, {runs} row permutations: {moved(fits, base[name], X_test, y_test)}")
    for r in repeats:
        out = [fit(new_probe(r), X, y) for _ in range(2)]
        fits = [fit(new_probe(r, seed), X, y)[0] for seed in range(1, runs + 1)]
        print(f"  new, n_repeats={r}, fit {min(t for _, t in out):.2f} s; {runs} other fold "
              f"seeds: {moved(fits, out[0][0], X_test, y_test)}")


def banking77_layers():
    """The report's first replicate of BANKING77 at its defaults: every layer's training and
    test features, on the probe's footing, and the labels."""
    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.choice.protocol import block_layers, on_probe_footing
    from sklearn_ntps.datasets import load_dataset
    from sklearn_ntps.evidence.report import _partitioned

    data = load_dataset("banking77", split="all", random_state=0, n_samples=900)
    texts, y, blocks, partitions = _partitioned("banking77", (data.data, data.target), 10, 3, 1,
                                                0)
    train, test = partitions[0]
    emb = HFEmbeddingTransformer(output="tokens", cache=False, progress=False).fit()
    layers = {}
    for layer, parts in block_layers(emb, texts, blocks, desc="", progress=False):
        moments, scale = on_probe_footing([parts[b] for b in train])
        layers[layer] = (moments.pooled, np.concatenate([parts[b].pooled for b in test]) * scale)
    return (layers, np.concatenate([y[blocks[b]] for b in train]),
            np.concatenate([y[blocks[b]] for b in test]))


def run_banking77(repeats, runs, stability_layers):
    start = time.perf_counter()
    layers, y, y_test = banking77_layers()
    X0 = next(iter(layers.values()))[0]
    print(f"BANKING77, SmolLM2-135M, {len(layers)} layers: {X0.shape[0]} x {X0.shape[1]} "
          f"training features, {len(y_test)} test texts, {np.unique(y).size} classes (forward "
          f"pass {time.perf_counter() - start:.0f} s)")
    variants = {"old": old_probe, "zero": zero_start_probe,
                **{f"r={r}": (lambda r=r: new_probe(r)) for r in repeats}}
    totals = {name: np.zeros(3) for name in variants}  # seconds, iterations, accuracy
    chosen = {name: [] for name in variants}
    for layer, (X, X_test) in layers.items():
        cells = []
        for name, make in variants.items():
            fitted, seconds = fit(make(), X, y)
            accuracy = 100 * fitted.score(X_test, y_test)
            iterations = int(np.sum(fitted[-1].n_iter_))
            totals[name] += seconds, iterations, accuracy
            chosen[name].append(c_of(fitted))
            cells.append(f"{name} C={c_of(fitted):g} {accuracy:.1f}% {iterations} it "
                         f"{seconds:.1f} s")
        print(f"  layer {layer:2d}: " + "; ".join(cells))
    last = list(variants)[-1]
    for name, (seconds, iterations, accuracy) in totals.items():
        same = sum(a == b for a, b in zip(chosen[name], chosen[last]))
        print(f"  {name}: {seconds:.0f} s over {len(layers)} layers "
              f"({seconds / totals['old'][0]:.2f}x old, {seconds / totals['zero'][0]:.2f}x "
              f"zero), {iterations:.0f} iterations ({iterations / totals['old'][1]:.2f}x old, "
              f"{iterations / totals['zero'][1]:.2f}x zero); "
              f"mean held-out accuracy {accuracy / len(layers):.2f}%; "
              f"{same} of {len(layers)} layers choose {last}'s C")
    rng = np.random.default_rng(1)
    perms = [rng.permutation(len(y)) for _ in range(runs)]
    for layer in stability_layers:
        X, X_test = layers[layer]
        fits = [fit(old_probe(), X[p], y[p])[0] for p in perms]
        print(f"  layer {layer}, old, {runs} row permutations: "
              f"{moved(fits, fit(old_probe(), X, y)[0], X_test, y_test)}")
        for r in repeats:
            fits = [fit(new_probe(r, seed), X, y)[0] for seed in range(1, runs + 1)]
            print(f"  layer {layer}, new n_repeats={r}, {runs} other fold seeds: "
                  f"{moved(fits, fit(new_probe(r), X, y)[0], X_test, y_test)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, type=float, action="append",
                        metavar=("N", "CLASSES", "SIGNAL"),
                        help="a case to run instead of the defaults; repeatable")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeats", type=int, nargs="*", default=[1, 2, 3, 5],
                        help="numbers of repeats of the new probe's 3 folds to try with "
                             "other fold seeds")
    parser.add_argument("--banking77", action="store_true",
                        help="the report's BANKING77 features instead of synthetic ones")
    parser.add_argument("--layers", type=int, nargs="*", default=[4, 15, 30],
                        help="with --banking77: the layers whose spread is measured")
    args = parser.parse_args(argv)
    cases = [(int(n), int(k), s) for n, k, s in args.case] if args.case else CASES
    print(f"load average (1, 5, 15 min) {os.getloadavg()} on {os.cpu_count()} cores")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if args.banking77:
            run_banking77(args.repeats, args.runs, args.layers)
        for case in [] if args.banking77 else cases:
            run_case(*case, args.runs, args.repeats)
    print(f"load average (1, 5, 15 min) {os.getloadavg()}")


if __name__ == "__main__":
    main()
