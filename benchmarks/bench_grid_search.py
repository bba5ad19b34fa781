"""GridSearchCV over every layer against the same search over one layer.

Both searches start from an empty cache and pay for their forward passes; the
all-layer search reuses each fold's one pass for every layer, so its extra
cost is one NTPS fit per (layer, fold). Prints that ratio (target: at most
1.3x), measured in one run, and the forward passes each search made.

    python benchmarks/bench_grid_search.py [--model SmolLM2-135M] [--texts 600]
"""

import argparse
import functools
import tempfile
import time

from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from sklearn_ntps import HFEmbeddingTransformer, NTPSScorer, cache
from sklearn_ntps.datasets import load_banking77
from sklearn_ntps.models import load_model


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
    one, one_calls = timed_search(args.model, [-1], texts, labels, calls)
    every = list(range(loaded.n_layers))
    all_, all_calls = timed_search(args.model, every, texts, labels, calls)
    print(f"model {args.model}, {len(texts)} BANKING77 texts, 3-fold CV")
    print(f"one layer:     {one:7.1f} s, {one_calls} forward batches")
    print(f"{len(every)} layers:     {all_:7.1f} s, {all_calls} forward batches")
    print(f"(b) all layers / one layer: {all_ / one:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
