"""Can the moments' products run in float32? The accuracy check of issue 10.

Float32 products halve the cost of C0 and C1 on a CPU. They are accepted only
if every layer's NTPS curve, both variants, matches the float64 one to 1e-6.
This script sums the products in float32 (per-coordinate equilibrated states,
float64 across batches) and prints the largest curve deviation per layer.

    python benchmarks/check_float32_moments.py [--model SmolLM2-135M] [--texts 300]
"""

import argparse

import numpy as np
import torch

from sklearn_ntps.checks import encode_labels
from sklearn_ntps.datasets import load_banking77
from sklearn_ntps.scores.ntps import fit_ntps, make_options
from sklearn_ntps.states.extraction import encode, padded_batch
from sklearn_ntps.states.models import load_model
from sklearn_ntps.states.moments import MomentAccumulator
from sklearn_ntps.states.statistics import Moments


def float32_products(batches, i, d):
    """C0 and C1 of layer ``i`` with float32 products on equilibrated states."""
    rms = np.sqrt(np.mean(np.concatenate([s[i] for s, _ in batches]).astype(np.float64) ** 2,
                          axis=0))
    c0, c1 = np.zeros((d, d)), np.zeros((d, d))
    for states, lengths in batches:
        h = states[i].astype(np.float64) / rms
        ends = np.cumsum(lengths)
        c = np.cumsum(h, axis=0)
        c -= np.repeat(np.vstack([np.zeros((1, d)), c[ends[:-1] - 1]]), lengths, axis=0)
        c[ends - 1] = 0.0
        c32, h32 = c.astype(np.float32), h.astype(np.float32)
        c0 += (c32.T @ c32).astype(np.float64) * np.outer(rms, rms)
        c1 += (c32[:-1].T @ h32[1:]).astype(np.float64) * np.outer(rms, rms)
    return c0, c1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M")
    parser.add_argument("--texts", type=int, default=300)
    args = parser.parse_args()
    loaded = load_model(args.model, progress=False)
    texts, y = load_banking77(split="train", n_samples=args.texts, return_X_y=True)
    layers = [loaded.n_layers // 8, loaded.n_layers // 2, loaded.n_layers - 1]
    encoded, _, _ = encode(loaded, texts, 512)
    acc, batches = MomentAccumulator(), []
    with torch.inference_mode():
        for lo in range(0, len(encoded), 16):
            batch = padded_batch(loaded, encoded[lo : lo + 16])
            mask = batch["attention_mask"].bool()
            hidden = loaded.model(**batch, output_hidden_states=True).hidden_states
            states = torch.stack([hidden[i] for i in layers])[:, mask].float().numpy()
            batches.append((states, mask.sum(dim=1).numpy()))
            acc.update(*batches[-1])
    classes, yi = encode_labels(y)
    d = loaded.hidden_size
    print(f"{args.model}, {len(texts)} BANKING77 texts: max |NTPS curve float32 - float64| "
          "(accepted if <= 1e-6)")
    for i, layer in enumerate(layers):
        m = acc.moments(layer=i)
        c0, c1 = float32_products(batches, i, d)
        m32 = Moments(m.pooled, c0, c1, m.n_pairs, m.context_sum, m.target_sum, m.precision)
        for centering in (False, True):
            options = make_options(centering=centering, precision=m.precision)
            ref = fit_ntps(m, yi, len(classes), options=options)
            got = fit_ntps(m32, yi, len(classes), options=options)
            devs = {v: np.abs(ref.curve(v) - got.curve(v)).max() for v in ("whitened", "paper")}
            print(f"layer {layer:>2} centering={centering!s:<5} " + "  ".join(
                f"{v} {dev:.1e}" for v, dev in devs.items()))


if __name__ == "__main__":
    main()
