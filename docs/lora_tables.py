"""Rule C's constants and the tables of docs/lora.md, from a prescreen's ``prescreen.json``.

    python docs/lora_tables.py docs/lora/prescreen.json > tables.md
"""

from __future__ import annotations

import json
import sys

import numpy as np

from sklearn_ntps.prescreen import VARIANTS, Prescreen, fit_rule


def main(path):
    with open(path) as f:
        data = json.load(f)
    study = Prescreen(model=data["model"], rows=data["rows"])
    rows = [r for r in study.rows if r.get("gain") is not None]
    print("| task | n train / test | NTPS_w before | after | NTPS_p before | after | probe | "
          "LoRA | gain (points) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['n_train']} / {r['n_test']} | "
              f"{r['ntps_whitened_before']:.3f} | {r['ntps_whitened_after']:.3f} | "
              f"{r['ntps_paper_before']:.3f} | {r['ntps_paper_after']:.3f} | "
              f"{r['probe_accuracy']:.3f} | {r['lora_accuracy']:.3f} | {100 * r['gain']:+.1f} |")
    gains = 100 * np.array([r["gain"] for r in rows])
    print(f"\nGain: median {np.median(gains):+.1f} points, {int((gains > 0).sum())} of "
          f"{len(rows)} tasks above zero, {int((gains >= 2).sum())} at 2 points or more.\n")
    print("| variant | Spearman(NTPS before, gain) [95% CI] | NTPS rose after LoRA | "
          "median change |")
    print("|---|---|---|---|")
    for v in VARIANTS:
        rho = study.spearman(v)
        change = np.array([r[f"ntps_{v}_after"] - r[f"ntps_{v}_before"] for r in rows])
        print(f"| {v} | {rho['estimate']:+.2f} [{rho['low']:+.2f}, {rho['high']:+.2f}] | "
              f"{int((change > 0).sum())} of {len(rows)} | {np.median(change):+.3f} |")
    rule = fit_rule(study)
    print("\nRule C:", json.dumps(rule))


if __name__ == "__main__":
    main(sys.argv[1])
