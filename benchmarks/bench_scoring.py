"""Time the NTPS maths (no model) for realistic hidden sizes.

Prints, for each d: the time to stream the moments of n texts, the time to
solve the subspaces and the whole NTPS curve, and the throughput of the
streaming accumulator against one float64 GEMM of the same size (the floor).

    python benchmarks/bench_scoring.py [--texts 1000] [--tokens 32]
"""

import argparse
import time

import numpy as np

from sklearn_ntps import NTPSScorer, compute_moments


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=32, help="mean tokens per text")
    parser.add_argument("--dims", type=int, nargs="+", default=[576, 2048])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'d':>6} {'moments s':>10} {'fit+curve s':>12} {'GEMM floor s':>13} "
          f"{'moments/floor':>14}")
    for d in args.dims:
        lengths = rng.integers(2, 2 * args.tokens, size=args.texts)
        X = [rng.normal(size=(t, d)).astype(np.float32) for t in lengths]
        y = rng.integers(0, 10, size=args.texts)
        t0 = time.perf_counter()
        moments = compute_moments(X)
        t1 = time.perf_counter()
        NTPSScorer(n_components=0.25).fit(moments, y)
        t2 = time.perf_counter()
        # The floor: the two d x d products over all tokens, nothing else.
        flat = np.concatenate(X).astype(np.float64)
        t3 = time.perf_counter()
        flat.T @ flat
        flat.T @ flat
        t4 = time.perf_counter()
        print(f"{d:>6} {t1 - t0:>10.2f} {t2 - t1:>12.2f} {t4 - t3:>13.2f} "
              f"{(t1 - t0) / (t4 - t3):>14.2f}")


if __name__ == "__main__":
    main()
