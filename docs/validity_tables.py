"""Rule B of docs/validity.md and the page's tables, from a report's ``replicates.csv``.

    python docs/validity_tables.py docs/validity/replicates.csv > tables.md
"""

from __future__ import annotations

import csv
import sys

import numpy as np

from sklearn_ntps.study import BASELINES, recommend, summarize

# Rule B's candidates, as registered (the report's extra column, the other
# NTPS variant, is shown in the tables but takes no part in the rule).
RULE_B = ["ntps", "ntps_paper_exact", "logme", "hscore", "transrate", "rankme", *BASELINES]


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    keys = ("model", "dataset", "layer", "replicate")
    scores = [k for k in rows[0] if k not in (*keys, "probe_accuracy")]
    out = []
    for r in rows:
        row = {"model": r["model"], "dataset": r["dataset"], "layer": int(r["layer"]),
               "replicate": int(r["replicate"]), "probe_accuracy": float(r["probe_accuracy"])}
        row.update({s: float(r[s]) for s in scores})
        out.append(row)
    return out, scores


def cell(c, scale=1.0, fmt="+.2f"):
    if c is None or not np.isfinite(c["estimate"]):
        return "n/a"
    est, lo, hi = (scale * c[k] for k in ("estimate", "low", "high"))
    return f"{est:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def main(path):
    rows, scores = read(path)
    s = summarize(rows, scores)
    names = [*scores, *BASELINES]
    groups = sorted({g for (m, _, g) in s if m == "layer_regret" and g != "mean"})
    print("| score | layers: Spearman | layers: regret (points) | data sets: Spearman "
          "| models: Spearman | models: regret (points) |")
    print("|---|---|---|---|---|---|")
    for n in names:
        get = lambda metric: s.get((metric, n, "mean"))  # noqa: E731
        print(f"| {n} | {cell(get('layer_spearman'))} | {cell(get('layer_regret'), 100, '.1f')} "
              f"| {cell(get('dataset_spearman'))} | {cell(get('model_spearman'))} "
              f"| {cell(get('model_regret'), 100, '.1f')} |")
    print()
    print("| model / data set | " + " | ".join(scores) + " |")
    print("|---" * (len(scores) + 1) + "|")
    for g in groups:
        print(f"| {g[0]} / {g[1]} | " + " | ".join(
            cell(s.get(("layer_spearman", n, g))) for n in scores) + " |")
    print()
    print("| model / data set | best layer (accuracy) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    point = [r for r in rows if r["replicate"] == 0]
    for g in groups:
        acc = {r["layer"]: r["probe_accuracy"] for r in point if (r["model"], r["dataset"]) == g}
        best = max(acc, key=acc.get)
        picks = [f"{s[('layer_pick', n, g)]['estimate']:.0f} "
                 f"({100 * s[('layer_regret', n, g)]['estimate']:.1f})" for n in names]
        print(f"| {g[0]} / {g[1]} | {best} ({acc[best]:.3f}) | " + " | ".join(picks) + " |")
    print()
    rec = recommend(rows, RULE_B)
    print(f"Rule B: lowest mean layer regret: {rec['pick']}; separated from every other "
          f"candidate: {rec['separated']}.")
    for cand, d in sorted(rec["differences"].items(), key=lambda kv: kv[1]["estimate"]):
        print(f"- {cand}: {cell(d, 100, '+.1f')} points more regret")


if __name__ == "__main__":
    main(sys.argv[1])
