"""Cost of the all-layer NTPS statistics, and of length-sorted batching.

Prints ratios measured in one run on the same texts (BANKING77, bundled):

(a) all-layer statistics (pooled features + C0, C1 for every layer) over the
    bare forward pass of the same batches (target: at most 1.10x), and the
    same for a few layers (``layers=``) and summed on the model's device;
(c) unsorted batching over length-sorted batching, on texts of mixed length;
and the time to embed the texts with their statistics.

    python benchmarks/bench_embedding.py [--model SmolLM2-135M] [--texts 256]
"""

import argparse
import time

import numpy as np
import torch

from sklearn_ntps.datasets import load_banking77, load_sms_spam
from sklearn_ntps.states.extraction import encode, extract_statistics, padded_batch
from sklearn_ntps.states.models import load_model


def bare_forward(loaded, texts, batch_size, max_length):
    """The same sorted batches through the model, nothing else (on any device)."""
    encoded, _, _ = encode(loaded, texts, max_length)
    order = np.argsort([-len(i) for i in encoded], kind="stable")
    with torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            batch = padded_batch(loaded, [encoded[i] for i in order[lo : lo + batch_size]])
            loaded.model(**batch, output_hidden_states=True)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    loaded = load_model(args.model, progress=False)
    texts = load_banking77(split="train", n_samples=args.texts).data
    kw = dict(batch_size=args.batch_size, max_length=512, progress=False)

    forward = best_of(args.repeats, lambda: bare_forward(loaded, texts, args.batch_size, 512))
    stats = best_of(args.repeats, lambda: extract_statistics(loaded, texts, **kw))
    pooled = best_of(args.repeats,
                     lambda: extract_statistics(loaded, texts, with_moments=False, **kw))
    print(f"model {args.model}: {loaded.n_layers} hidden states of {loaded.hidden_size}; "
          f"{len(texts)} BANKING77 texts, batch {args.batch_size}")
    print(f"bare forward            {forward:7.2f} s")
    print(f"pooled, all layers      {pooled:7.2f} s   ratio {pooled / forward:.2f}x")
    print(f"(a) NTPS stats, all     {stats:7.2f} s   ratio {stats / forward:.2f}x "
          "(target <= 1.10x)")
    few = [loaded.n_layers // 3, 2 * loaded.n_layers // 3, loaded.n_layers - 1]
    some = best_of(args.repeats, lambda: extract_statistics(loaded, texts, layers=few, **kw))
    print(f"    NTPS stats, layers {few}  {some:7.2f} s   ratio {some / forward:.2f}x")
    dev = best_of(args.repeats, lambda: extract_statistics(loaded, texts, on_device=True, **kw))
    print(f"    NTPS stats, all, summed in torch on {loaded.model.device}  {dev:7.2f} s   "
          f"ratio {dev / forward:.2f}x")

    # Mixed lengths: short queries and long SMS messages, shuffled together.
    mixed = texts[: args.texts // 2] + load_sms_spam(split="train", n_samples=args.texts // 2).data
    mixed = [mixed[i] for i in np.random.default_rng(0).permutation(len(mixed))]
    on = best_of(args.repeats, lambda: extract_statistics(loaded, mixed, **kw))
    off = best_of(args.repeats,
                  lambda: extract_statistics(loaded, mixed, sort_by_length=False, **kw))
    print(f"(c) mixed lengths: sorted {on:.2f} s, unsorted {off:.2f} s   "
          f"unsorted/sorted {off / on:.2f}x")


if __name__ == "__main__":
    main()
