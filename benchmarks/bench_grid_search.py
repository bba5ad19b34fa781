"""GridSearchCV over every layer against the same search over one layer.

Both searches start from an empty cache and pay for their forward passes; the
all-layer search reuses each fold's one pass for every layer, so its extra
cost is one NTPS fit and score per (layer, fold). Prints that ratio (target:
at most 1.3x), measured in one run, the forward passes each search made, and
the NTPS fit + score of one (layer, fold) on the model's states (target: at
most 0.1 s at d = 576), beside the same with eigendecompositions only (the
factorisation before the Cholesky path).

    python benchmarks/bench_grid_search.py [--model SmolLM2-135M] [--texts 600]
"""

import argparse
import functools
import tempfile
import time

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from sklearn_ntps import HFEmbeddingTransformer, NTPSScorer
from sklearn_ntps.datasets import load_banking77
from sklearn_ntps.scores import subspaces
from sklearn_ntps.states import cache
from sklearn_ntps.states.extraction import extract_statistics
from sklearn_ntps.states.models import load_model
from sklearn_ntps.states.statistics import Moments


def timed_search(model, layers, texts, labels, calls):
    cache.clear_memory()
    with tempfile.TemporaryDirectory() as folder:
        pipe = make_pipeline(
            HFEmbeddingTransformer(model_name_or_path=model, output="tokens", cache=folder,
                                   progress=False),
            NTPSScorer(),
        )
        grid = GridSearchCV(pipe, {"hfembeddingtransformer__layer": layers},
                            cv=KFold(3, shuffle=True, random_state=0), refit=False)
        calls.clear()
        t0 = time.perf_counter()
        grid.fit(texts, labels)
        return time.perf_counter() - t0, len(calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--texts", type=int, default=600)
    args = parser.parse_args()
    loaded = load_model(args.model, progress=False)
    calls = []
    forward = loaded.model.forward

    @functools.wraps(forward)
    def counted(*a, **kw):
        calls.append(1)
        return forward(*a, **kw)

    loaded.model.forward = counted
    texts, labels = load_banking77(split="train", n_samples=args.texts, return_X_y=True)
    labels = np.asarray(labels)
    one, one_calls = timed_search(args.model, [-1], texts, labels, calls)
    every = list(range(loaded.n_layers))
    all_, all_calls = timed_search(args.model, every, texts, labels, calls)
    print(f"model {args.model}, {len(texts)} BANKING77 texts, 3-fold CV")
    print(f"one layer:     {one:7.1f} s, {one_calls} forward batches")
    print(f"{len(every)} layers:     {all_:7.1f} s, {all_calls} forward batches")
    print(f"(b) all layers / one layer: {all_ / one:.2f}x (target <= 1.3x); "
          f"{(all_ - one) / (3 * (len(every) - 1)):.3f} s more per extra (layer, fold)")

    # One (layer, fold) of the search: fit on 2/3 of the texts, score on the rest.
    stats = extract_statistics(loaded, texts, progress=False)
    train = np.arange(len(texts)) % 3 != 0
    per_fit = {}
    for name in ("cholesky", "eigen only"):
        if name == "eigen only":
            subspaces._cholesky_whitening = lambda B: None
        t0 = time.perf_counter()
        for layer in every:
            m = stats.layer(layer)
            tr = NTPSScorer().fit(_subset(m, train), labels[train])
            tr.score(_subset(m, ~train), labels[~train])
        per_fit[name] = (time.perf_counter() - t0) / len(every)
    print(f"NTPS fit + score per (layer, fold), d = {loaded.hidden_size}: "
          f"{per_fit['cholesky']:.3f} s (target <= 0.1 s); eigendecompositions only: "
          f"{per_fit['eigen only']:.3f} s ({per_fit['eigen only'] / per_fit['cholesky']:.2f}x)")


def _subset(moments, rows):
    # The grid's folds cut texts, whose moments the cache sums; here both
    # sides keep all pairs (the cost does not depend on which).
    return Moments(moments.pooled[rows], moments.c0, moments.c1, moments.n_pairs,
                   moments.context_sum, moments.target_sum, moments.precision)


if __name__ == "__main__":
    main()
