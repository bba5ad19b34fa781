"""Rule A of docs/validity.md: which NTPS configuration becomes the default.

Runs the 32 NTPS configurations (variant x centering x shrinkage x k) on every
layer of the bundled models and data sets, with the held-out probe, checks
each configuration's numerical stability, and applies rule A as written
(including its leave-one-data-set-out check). Writes ``docs/validity/rule_a.csv``
(one row per model, data set, layer) and ``docs/validity/rule_a.json``.

    python docs/validity_study.py            # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.base import clone

from sklearn_ntps import HFEmbeddingTransformer
from sklearn_ntps.datasets import load_dataset
from sklearn_ntps.report import _csv, default_probe
from sklearn_ntps.scoring import encode_labels, fit_ntps, make_options, resolve_n_components
from sklearn_ntps.study import PROBE, perturb_moments, replicate_metrics

MODELS = ["SmolLM2-135M", "all-MiniLM-L6-v2"]
DATASETS = ["banking77", "clinc150", "sms_spam", "trec", "rotten_tomatoes"]
N_TRAIN = N_TEST = 1000
KS = (0.05, 0.1, 0.25, 0.5)
SETUPS = list(itertools.product((False, True), (None, "ledoit-wolf")))
CURRENT = {"variant": "paper", "centering": False, "shrinkage": None, "k": 0.25}
MARGIN = 0.05
OUT = Path(__file__).parent / "validity"


def name(variant, centering, shrinkage, k):
    return f"{variant}|c={int(centering)}|s={shrinkage or 'none'}|k={k}"


def configs():
    for (centering, shrinkage), variant, k in itertools.product(SETUPS, ("paper", "whitened"), KS):
        yield {"variant": variant, "centering": centering, "shrinkage": shrinkage, "k": k}


def ntps_columns(moments, y):
    """Every configuration's NTPS of one layer, four eigen-setups for all 32."""
    classes, yi = encode_labels(y)
    row = {}
    for centering, shrinkage in SETUPS:
        options = make_options(centering=centering, shrinkage=shrinkage,
                               precision=moments.precision)
        fit = fit_ntps(moments, yi, len(classes), options=options)
        for variant in ("paper", "whitened"):
            curve = fit.curve(variant)
            for k in KS:
                row[name(variant, centering, shrinkage, k)] = float(
                    curve[resolve_n_components(k, moments.n_features) - 1])
    return row


def layer_rows():
    rows = []
    for dataset in DATASETS:
        train = load_dataset(dataset, split="train", n_samples=N_TRAIN, random_state=0)
        test = load_dataset(dataset, split="test", n_samples=N_TEST, random_state=0)
        for model in MODELS:
            emb = dict(model_name_or_path=model, progress=False)
            tokens = HFEmbeddingTransformer(output="tokens", **emb).fit()
            pooled = HFEmbeddingTransformer(output="pooled", **emb).fit()
            for (layer, moments), (_, test_pooled) in zip(tokens.transform_layers(train.data),
                                                          pooled.transform_layers(test.data)):
                probe = clone(default_probe()).fit(moments.pooled, train.target)
                rows.append({"model": model, "dataset": dataset, "layer": layer, "replicate": 0,
                             PROBE: float(probe.score(test_pooled, test.target)),
                             **ntps_columns(moments, train.target)})
                print(dataset, model, layer, f"{rows[-1][PROBE]:.3f}", flush=True)
    return rows


def stability():
    """Largest relative move of each configuration under 1e-6 relative noise on the moments."""
    data = load_dataset("banking77", split="train", n_samples=120, random_state=0)
    moments = HFEmbeddingTransformer(output="tokens", layer=15, progress=False).fit_transform(
        data.data)
    base = ntps_columns(moments, data.target)
    worst = dict.fromkeys(base, 0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        noisy = ntps_columns(perturb_moments(moments, 1e-6, rng), data.target)
        for key in base:
            worst[key] = max(worst[key], abs(noisy[key] - base[key]) / max(base[key], 1e-12))
    return worst


def rule_a(rows, eligible, datasets):
    """Steps 2-3 of rule A on the rows of ``datasets``; returns (winner, criteria)."""
    names = [name(**c) for c in configs()]
    used = [r for r in rows if r["dataset"] in datasets]
    metrics = replicate_metrics(used, names, baselines=())
    crit = {n: metrics["layer_spearman", n, "mean"] for n in names}
    best = max(crit[n] for n in names if n in eligible)
    close = [c for c in configs() if name(**c) in eligible and crit[name(**c)] >= best - MARGIN]
    changes = lambda c: sum(c[key] != CURRENT[key] for key in CURRENT)  # noqa: E731
    winner = min(close, key=lambda c: (changes(c), -crit[name(**c)]))
    return winner, crit


def main():
    OUT.mkdir(exist_ok=True)
    moves = stability()
    eligible = {n for n, move in moves.items() if move < 0.01}
    rows = layer_rows()
    winner, crit = rule_a(rows, eligible, DATASETS)
    held_out = {}
    for left_out in DATASETS:
        others = [d for d in DATASETS if d != left_out]
        pick, _ = rule_a(rows, eligible, others)
        _, on_left = rule_a(rows, eligible, [left_out])
        held_out[left_out] = {"pick": name(**pick), "criterion_on_left_out": on_left[name(**pick)]}
    columns = ["model", "dataset", "layer", PROBE, *crit]
    (OUT / "rule_a.csv").write_text(_csv(columns, rows))
    (OUT / "rule_a.json").write_text(json.dumps({
        "winner": winner, "criterion": crit, "moves_under_1e-6_noise": moves,
        "eligible": sorted(eligible), "leave_one_dataset_out": held_out}, indent=2))
    print("winner:", winner, f"criterion {crit[name(**winner)]:+.3f}")
    for n in sorted(crit, key=crit.get, reverse=True)[:8]:
        print(f"  {n:36s} {crit[n]:+.3f} {'eligible' if n in eligible else 'UNSTABLE'}")
    print("leave one data set out:", json.dumps(held_out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
