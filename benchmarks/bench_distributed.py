"""Scaling of the sharded extraction on a Dask LocalCluster, and its merge overhead.

Prints, on the same BANKING77 texts (bundled) and the all-layer statistics:

- the time in this process (torch's default threads, then one thread);
- the time on a LocalCluster of 1 and of 2 one-thread worker processes, the
  models already loaded on the workers (one warm-up call);
- the 1 -> 2 worker speed-up, and the overhead of sharding: the time of
  ``Statistics.concat`` over the whole, and the 1-worker time over the
  one-thread in-process time (the token count, transfers and merge).

    python benchmarks/bench_distributed.py [--model SmolLM2-135M] [--texts 128]

Each worker computes on one thread, as in-process with one thread: a fair
comparison on a machine with as many cores as workers.
"""

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from sklearn_ntps.datasets import load_banking77
from sklearn_ntps.states.distributed import (
    get_client,
    local_cluster,
    plan_shards,
    sharded_statistics,
)
from sklearn_ntps.states.extraction import encode, extract_statistics
from sklearn_ntps.states.models import load_model
from sklearn_ntps.states.statistics import Statistics


def timed(fn, repeats=1):
    """The best time of ``repeats`` calls (the machine may be busy), and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def on_cluster(n_workers, model, texts, kw, repeats):
    with local_cluster(n_workers) as address:
        client = get_client(address)
        client.run(torch.set_num_threads, 1)
        # Warm-up, outside the timing: every worker loads the model and runs it once.
        client.run(lambda: load_model(model, progress=False) and None)
        sharded_statistics(model, texts[:8], scheduler=address, **kw)
        return timed(lambda: sharded_statistics(model, texts, scheduler=address, **kw), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    loaded = load_model(args.model, progress=False)
    texts = load_banking77(split="train", n_samples=args.texts).data
    kw = {"batch_size": args.batch_size, "max_length": 512, "progress": False}

    default_threads = torch.get_num_threads()
    extract_statistics(loaded, texts[:8], **kw)  # warm-up: the first pass allocates
    t_default, _ = timed(lambda: extract_statistics(loaded, texts, **kw), args.repeats)
    torch.set_num_threads(1)  # as on the workers, so the states agree bit for bit
    # Dask's workers also start with one BLAS thread (OPENBLAS_NUM_THREADS=1 and the like).
    with threadpool_limits(1):
        t_one, single = timed(lambda: extract_statistics(loaded, texts, **kw), args.repeats)
    # The merge alone, on the two shards a 2-worker cluster would get.
    lengths = [len(ids) for ids in encode(loaded, texts, 512)[0]]
    parts = [extract_statistics(loaded, [texts[i] for i in s], **kw)
             for s in plan_shards(lengths, 2, args.batch_size)]
    t_merge, _ = timed(lambda: Statistics.concat(parts))
    torch.set_num_threads(default_threads)

    t_1, _ = on_cluster(1, args.model, texts, kw, args.repeats)
    t_2, sharded = on_cluster(2, args.model, texts, kw, args.repeats)
    gap = np.abs(sharded.c0 - single.c0).max() / np.abs(single.c0).max()
    print(f"model {args.model}: {loaded.n_layers} hidden states of {loaded.hidden_size}; "
          f"{len(texts)} BANKING77 texts, batch {args.batch_size}, all-layer statistics")
    print(f"in process, {default_threads} torch threads  {t_default:7.2f} s")
    print(f"in process, 1 torch and BLAS thread  {t_one:7.2f} s")
    print(f"LocalCluster, 1 worker        {t_1:7.2f} s   overhead over 1 thread "
          f"{t_1 / t_one - 1:+.1%}")
    print(f"LocalCluster, 2 workers       {t_2:7.2f} s   speed-up 1 -> 2 workers {t_1 / t_2:.2f}x")
    print(f"Statistics.concat of 2 shards  {t_merge:7.3f} s   {t_merge / t_2:.1%} of the "
          f"2-worker time")
    print(f"2 workers vs 1 thread in process: pooled identical "
          f"{np.array_equal(sharded.pooled['mean'], single.pooled['mean'])}, "
          f"max relative C0 gap {gap:.1e}")


if __name__ == "__main__":
    main()
