"""The tables of LoRA study v3 (docs/lora_v3_plan.md, section 5), from its rows on disk.

``write_tables(folder)`` reads ``folder/rows/*.csv`` and writes ``study.json`` and
``tables.md``: the primary Spearman(NTPS, gain) with its source-clustered interval, the
secondary statistics, the gains with McNemar counts, and NTPS's rise after LoRA against the
shuffled-label LoRA. The statistics are docs/lora_tables.py's (v2's), unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PREDICTORS = ("ntps", "ntps_minus_chance", "logme", "knn", "ridge_loo", "headroom")
ALPHA_COUNT = 0.05


def within_models(rows, statistic):
    """``statistic(rows of one model)`` averaged over the models (NaN if any is undefined)."""
    models = sorted({r["model"] for r in rows})
    values = [statistic([r for r in rows if r["model"] == m]) for m in models]
    return float(np.mean(values)) if values else float("nan")


def spearman(x, y):
    from scipy.stats import spearmanr

    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def correlation(rows, predictor, partial=False):
    """Spearman(predictor, gain) inside each model, averaged; with ``partial``, given headroom.

    Its 95% interval: v2's cluster bootstrap over sources, t with (sources - 1) df."""
    tables = _sibling("lora_tables")

    def stat(rs):
        def one(m):
            x = [r[predictor] for r in m]
            g = [r["gain"] for r in m]
            if partial:
                return tables.partial_spearman(x, g, [r["headroom"] for r in m])
            return spearman(x, g)
        return within_models(rs, one)

    return tables.cluster_bootstrap(rows, stat, bounds=(-1.0, 1.0))


def rise_control(real, shuffled):
    """D = real-label rise - shuffled-label rise of NTPS on the test texts, per row and in mean.

    A row's claim needs D > 0 on all its test texts and on each half."""
    tables = _sibling("lora_tables")
    pairs = []
    for r in real:
        s = next((x for x in shuffled if (x["task"], x["model"]) == (r["task"], r["model"])),
                 None)
        if s is None:
            continue
        d = r["ntps_test_after"] - s["ntps_test_after"]
        halves = [r[f"ntps_after_h{h}"] - s[f"ntps_after_h{h}"] for h in (0, 1)]
        pairs.append({"task": r["task"], "source": r["source"], "model": r["model"], "d": d,
                      "claim": bool(d > 0 and min(halves) > 0),
                      "real_rise": r["ntps_rise"]})
    mean = tables.cluster_bootstrap(pairs, lambda rs: float(np.mean([p["d"] for p in rs])))
    return {"rows": pairs, "mean_d": mean,
            "n_claimed": sum(p["claim"] for p in pairs),
            "n_real_rise_only": sum(p["real_rise"] > 0 and not p["claim"] for p in pairs)}


def summarise(rows):
    real = [r for r in rows if r["arm"] == "real"]
    shuffled = [r for r in rows if r["arm"] == "shuffled"]
    gains = np.array([r["gain"] for r in real], dtype=float)
    out = {"n_rows": len(real), "n_sources": len({r["source"] for r in real}),
           "models": sorted({r["model"] for r in real})}
    if not real:
        return out
    out["primary"] = correlation(real, "ntps")
    out["secondary"] = {p: correlation(real, p) for p in PREDICTORS if p != "ntps"}
    out["partial_given_headroom"] = {p: correlation(real, p, partial=True)
                                     for p in PREDICTORS if p not in ("headroom",)}
    out["gain"] = {"median": float(np.median(gains)), "min": float(gains.min()),
                   "max": float(gains.max()),
                   "lora_better": sum(r["mcnemar_p"] < ALPHA_COUNT and r["gain"] > 0
                                      for r in real),
                   "start_better": sum(r["mcnemar_p"] < ALPHA_COUNT and r["gain"] < 0
                                       for r in real)}
    out["chance"] = {"ntps_above_chance": sum(r["ntps"] > r["ntps_chance"] for r in real)}
    out["rise"] = rise_control(real, shuffled)
    low, high = out["primary"]["low"], out["primary"]["high"]
    out["verdict"] = ("undefined (too few rows)" if not np.isfinite([low, high]).all() else
                      "detected, the paper's direction" if high < 0 else
                      "detected, opposite to the paper" if low > 0 else
                      "not detected; the paper's -0.40 to -0.90 is ruled out" if low > -0.40
                      else "not detected")
    return out


def write_tables(folder):
    """``study.json`` and ``tables.md`` in ``folder``, from ``folder/rows``."""
    from sklearn_ntps._utils import write_atomic

    folder = Path(folder)
    rows = _sibling("lora_v3_study").read_rows(folder)
    summary = summarise(rows)
    write_atomic(folder / "study.json", json.dumps(summary, indent=1, default=float))
    write_atomic(folder / "tables.md", to_markdown(rows, summary))
    return summary


def to_markdown(rows, s):
    lines = [f"# LoRA study v3: {s['n_rows']} real-label rows from {s['n_sources']} sources "
             f"({', '.join(s['models']) or 'none'})", ""]
    if not s["n_rows"]:
        return "\n".join([*lines, "No row yet.", ""])
    p = s["primary"]
    lines += [f"**Primary**: Spearman(NTPS, gain) = {p['estimate']:+.2f} "
              f"[{p['low']:+.2f}, {p['high']:+.2f}] (95%, {p['n_clusters']} sources): "
              f"{s['verdict']}.", "",
              "| predictor | Spearman with the gain [95%] | partial given headroom [95%] |",
              "|---|---|---|"]
    for name in PREDICTORS:
        c = s["primary"] if name == "ntps" else s["secondary"][name]
        q = s["partial_given_headroom"].get(name)
        part = "" if q is None else f"{q['estimate']:+.2f} [{q['low']:+.2f}, {q['high']:+.2f}]"
        lines.append(f"| {name} | {c['estimate']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] | "
                     f"{part} |")
    g = s["gain"]
    lines += ["", f"Gain (LoRA minus its own start, points): median {g['median']:+.1f}, from "
              f"{g['min']:+.1f} to {g['max']:+.1f}; McNemar p < 0.05 for LoRA on "
              f"{g['lora_better']} tasks, for the start on {g['start_better']}.",
              f"NTPS above its chance level on {s['chance']['ntps_above_chance']} of "
              f"{s['n_rows']} rows.", ""]
    d = s["rise"]["mean_d"]
    lines += [f"NTPS rise after LoRA beyond the shuffled-label LoRA (D): mean {d['estimate']:+.3f}"
              f" [{d['low']:+.3f}, {d['high']:+.3f}] over {d['n_rows']} rows; claimed on "
              f"{s['rise']['n_claimed']} rows; real rise without the claim on "
              f"{s['rise']['n_real_rise_only']}.", "",
              "| task | model | start | LoRA | gain | McNemar p | NTPS (chance) | D |",
              "|---|---|---|---|---|---|---|---|"]
    ds = {(x["task"], x["model"]): x["d"] for x in s["rise"]["rows"]}
    for r in (r for r in rows if r["arm"] == "real"):
        dd = ds.get((r["task"], r["model"]))
        lines.append(f"| {r['task']} | {r['model']} | {r['start_accuracy']:.3f} | "
                     f"{r['lora_accuracy']:.3f} | {r['gain']:+.1f} | {r['mcnemar_p']:.2g} | "
                     f"{r['ntps']:.3f} ({r['ntps_chance']:.3f}) | "
                     f"{'' if dd is None else f'{dd:+.3f}'} |")
    return "\n".join([*lines, ""])


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(Path(__file__).with_name(f"{name}.py"), name)
