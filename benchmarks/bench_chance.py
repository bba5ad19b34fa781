"""What the chance levels cost: per layer and per score, and as a share of a `select` run.

Every labelled score is refitted on ``n_permutations`` shuffles of the labels
(``sklearn_ntps.scores.chance``), sharing the label-free work. This measures, on the
statistics of a bundled model over BANKING77 texts:

1. per score, the time to score one layer with 0 and with 30 shuffles (best of 3);
2. ``LayerSelector(...).fit``, without the cache (forward passes included), with
   ``n_permutations=0`` and ``30``: the shuffles' share of the run, for one model (its
   default score, LogME) and for the three bundled models (theirs, H-score).

    python benchmarks/bench_chance.py --model SmolLM2-135M --n-texts 300

Run it on an idle machine: the load is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.base import clone

from sklearn_ntps import HFEmbeddingTransformer, LayerSelector
from sklearn_ntps.choice.protocol import on_probe_footing
from sklearn_ntps.choice.selection import DEFAULT_MODELS
from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.scores.chance import ChanceLevelWarning
from sklearn_ntps.scores.registry import default_scorers


def best_of(n, call):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--n-texts", type=int, default=300)
    parser.add_argument("--layer", type=int, default=10)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ChanceLevelWarning)
    data = load_dataset("banking77", split="train", n_samples=args.n_texts, random_state=0)
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores); {args.model}, "
          f"{args.n_texts} BANKING77 texts, {len(np.unique(data.target))} classes")

    emb = HFEmbeddingTransformer(model_name_or_path=args.model, layer=args.layer,
                                 output="tokens", progress=False).fit()
    moments, _ = on_probe_footing([emb.transform(data.data)])
    print(f"\n1. One layer (layer {args.layer}, d = {moments.n_features}), best of 3:")
    print(f"   {'score':<18} {'0 shuffles':>11} {'30 shuffles':>12} {'added':>8}")
    for name, scorer in default_scorers().items():
        if "n_permutations" not in scorer.get_params():
            continue
        t0 = best_of(3, lambda s=scorer: clone(s).set_params(n_permutations=0).fit(
            moments, data.target))
        t30 = best_of(3, lambda s=scorer: clone(s).set_params(n_permutations=30).fit(
            moments, data.target))
        print(f"   {name:<18} {t0:>10.3f}s {t30:>11.3f}s {t30 - t0:>+7.3f}s")

    print("\n2. LayerSelector.fit, every layer, no cache (forward passes included), "
          "the default score:")
    for models in ([args.model], list(DEFAULT_MODELS)):
        runs = {}
        for n_permutations in (0, 30, 0, 30):
            selector = LayerSelector(models, cache=False, progress=False,
                                     n_permutations=n_permutations)
            start = time.perf_counter()
            selector.fit(data.data, data.target)
            runs.setdefault(n_permutations, []).append(time.perf_counter() - start)
        t0, t30 = min(runs[0]), min(runs[30])
        n_pairs = len(selector.results_)
        print(f"   {len(models)} model(s), {type(selector.scorer_).__name__}, {n_pairs} pairs: "
              f"without shuffles {t0:.1f} s, with 30 {t30:.1f} s (best of 2 each, "
              f"alternating): {(t30 - t0) / n_pairs:+.3f} s per pair, "
              f"{100 * (t30 - t0) / t30:.1f}% of the run")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
