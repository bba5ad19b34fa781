"""The tables of docs/lora.md.

Section 2 (the first study, whose rule C the command no longer uses): its constants and
tables, from that study's ``prescreen.json``::

    python docs/lora_tables.py docs/lora/prescreen.json > tables.md

Section 4 (study v2): :func:`write_tables`, from the rows of docs/lora_study.py
(``python docs/lora_study.py --tables``), and the analysis functions it uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sklearn_ntps.scores.ntps import VARIANTS


def first_study_spearman(rows, variant, n_boot=2000, seed=0) -> dict:
    """Section 2's Spearman(NTPS before, gain) with its percentile bootstrap over the tasks,
    as the first study computed it (kept so that its numbers regenerate)."""
    from sklearn_ntps.evidence.study import spearman

    x = np.array([r[f"ntps_{variant}_before"] for r in rows])
    g = np.array([r["gain"] for r in rows])
    draws = np.random.default_rng(seed).integers(0, len(rows), (n_boot, len(rows)))
    boot = np.array([spearman(x[i], g[i]) for i in draws])
    low, high = np.percentile(boot[np.isfinite(boot)], [2.5, 97.5])
    return {"estimate": spearman(x, g), "low": float(low), "high": float(high)}


def first_study_rule(rows) -> dict:
    """Rule C of section 2: the variant with the more negative Spearman, its line
    gain = intercept + slope * NTPS, and whether Spearman's interval lies below zero."""
    rhos = {v: first_study_spearman(rows, v) for v in VARIANTS}
    variant = min(VARIANTS, key=lambda v: (rhos[v]["estimate"], VARIANTS.index(v)))
    slope, intercept = np.polyfit([r[f"ntps_{variant}_before"] for r in rows],
                                  [r["gain"] for r in rows], 1)
    rho = rhos[variant]
    return {"variant": variant, "intercept": float(intercept), "slope": float(slope),
            "rho": rho["estimate"], "low": rho["low"], "high": rho["high"],
            "n_tasks": len(rows), "significant": bool(rho["high"] < 0)}


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = [r for r in data["rows"] if r.get("gain") is not None]
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
        rho = first_study_spearman(rows, v)
        change = np.array([r[f"ntps_{v}_after"] - r[f"ntps_{v}_before"] for r in rows])
        print(f"| {v} | {rho['estimate']:+.2f} [{rho['low']:+.2f}, {rho['high']:+.2f}] | "
              f"{int((change > 0).sum())} of {len(rows)} | {np.median(change):+.3f} |")
    print("\nRule C:", json.dumps(first_study_rule(rows)))


# ============================================================================= study v2
PEERS = ("logme", "knn", "ridge_loo")
PREDICTORS = ("ntps", *PEERS, "headroom")
PAPER_RANGE = (-0.90, -0.40)  # the paper's Spearman(NTPS, gain), 12 data sets, 8 models
N_PERM, N_BOOT = 10_000, 2000


def _pearson(a, b) -> float:
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 1e-9 else float("nan")


def rank_residuals(v, z):
    """The ranks of ``v`` minus their least-squares line on the ranks of ``z``."""
    from scipy.stats import rankdata

    rv, rz = rankdata(v), rankdata(z)
    design = np.column_stack([np.ones_like(rz), rz])
    return rv - design @ np.linalg.lstsq(design, rv, rcond=None)[0]


def partial_spearman(x, y, z) -> float:
    """Spearman(x, y) controlling for z: the correlation of the residuals of the ranks of x and
    of y, each regressed on the ranks of z (equal to the textbook formula
    ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))`` on Spearman's r); NaN under 4
    values."""
    if len(x) < 4:
        return float("nan")
    return _pearson(rank_residuals(x, z), rank_residuals(y, z))


def permutation_p(x, y, z=None, *, n_perm=N_PERM, seed=0) -> float:
    """Two-sided permutation p-value of Spearman(x, y), or of the partial Spearman given z
    (the residuals of y's ranks permuted against x's): ``(1 + #{|r*| >= |r|}) / (1 + n_perm)``."""
    from scipy.stats import rankdata

    if z is None:
        a, b = rankdata(x), rankdata(y)
    elif len(x) < 4:
        return float("nan")
    else:
        a, b = rank_residuals(x, z), rank_residuals(y, z)
    observed = _pearson(a, b)
    if not np.isfinite(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    shuffled = b[np.argsort(rng.random((n_perm, len(b))), axis=1)]
    a, shuffled = a - a.mean(), shuffled - shuffled.mean(axis=1, keepdims=True)
    r = shuffled @ a / np.sqrt((a @ a) * (shuffled ** 2).sum(axis=1))
    return float((1 + np.sum(np.abs(r) >= abs(observed) - 1e-12)) / (1 + n_perm))


def cluster_bootstrap(rows, statistic, *, cluster="source", n_boot=N_BOOT, seed=0,
                      confidence=0.95, bounds=(-np.inf, np.inf)) -> dict:
    """``statistic(rows)`` with a 95% interval from a bootstrap that resamples whole clusters.

    Each replicate draws as many clusters as there are, with replacement, and takes every
    row of each drawn cluster (twice if drawn twice). The interval is the estimate +- the
    t quantile with (clusters - 1) degrees of freedom times the bootstrap standard error
    (``low``, ``high``, clipped to ``bounds``: a correlation's to [-1, 1]); the percentile
    interval is given beside (``pct_low``, ``pct_high``).
    Replicates where the statistic is undefined are left out (``n_valid`` counts the rest).
    """
    from scipy.stats import t as student_t

    names = sorted({r[cluster] for r in rows})
    groups = [[r for r in rows if r[cluster] == c] for c in names]
    nan = float("nan")
    out = {"estimate": float(statistic(rows)) if rows else nan, "se": nan, "low": nan,
           "high": nan, "pct_low": nan, "pct_high": nan, "n_clusters": len(names),
           "n_rows": len(rows), "n_valid": 0}
    if len(names) < 2 or not np.isfinite(out["estimate"]):
        return out
    rng = np.random.default_rng(seed)
    boot = np.array([statistic([r for i in rng.integers(0, len(names), len(names))
                                for r in groups[i]]) for _ in range(n_boot)], dtype=float)
    boot = boot[np.isfinite(boot)]
    if boot.size < 2:
        return out
    se, q = float(boot.std(ddof=1)), float(student_t.ppf(0.5 + confidence / 2, len(names) - 1))
    out.update(se=se, low=max(out["estimate"] - q * se, bounds[0]),
               high=min(out["estimate"] + q * se, bounds[1]), n_valid=int(boot.size))
    out["pct_low"], out["pct_high"] = (float(v) for v in np.percentile(
        boot, [50 - 50 * confidence, 50 + 50 * confidence]))
    return out


def correlations(rows, predictor, *, n_perm=N_PERM, n_boot=N_BOOT) -> dict:
    """Spearman(predictor, gain) and its partial given the probe's held-out accuracy, each with
    a permutation p-value and a bootstrap interval clustered by source data set."""
    from sklearn_ntps.evidence.study import spearman

    def cols(rs):
        return ([r[predictor] for r in rs], [r["gain"] for r in rs],
                [r["probe_accuracy"] for r in rs])

    x, g, z = cols(rows)
    return {"spearman": {**cluster_bootstrap(rows, lambda rs: spearman(*cols(rs)[:2]),
                                             n_boot=n_boot, bounds=(-1, 1)),
                         "p": permutation_p(x, g, n_perm=n_perm) if len(rows) >= 3 else np.nan},
            "partial": {**cluster_bootstrap(rows, lambda rs: partial_spearman(*cols(rs)),
                                            n_boot=n_boot, bounds=(-1, 1)),
                        "p": permutation_p(x, g, z, n_perm=n_perm)}}


def leave_one_task_out(rows, predictor) -> dict:
    """For each task: gain = a + b * predictor by least squares on the other tasks' rows
    (``predictor=None``: their mean gain), the absolute errors on this task's rows, in
    points. ``mae``: the mean over every predicted row."""
    per_task, errors = {}, []
    for task in sorted({r["task"] for r in rows}):
        train = [r for r in rows if r["task"] != task]
        if not train:
            continue
        g = np.array([r["gain"] for r in train])
        slope, intercept = 0.0, g.mean()
        if predictor is not None:
            x = np.array([r[predictor] for r in train])
            if len(train) >= 2 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, g, 1)
        err = [abs(intercept + slope * (r[predictor] if predictor else 0) - r["gain"])
               for r in rows if r["task"] == task]
        per_task[task] = float(np.mean(err))
        errors += err
    return {"mae": float(np.mean(errors)) if errors else float("nan"), "per_task": per_task}


def decide(rows, loto) -> dict:
    """What ``sklearn-ntps lora-prescreen`` will say (docs/lora.md section 4): the predictor
    with the lowest leave-one-task-out error (ties go to headroom), whether it beats headroom
    and the mean gain of the other tasks, and its line fitted on every eligible row."""
    from sklearn_ntps.choice.protocol import task_interval

    maes = {p: loto[p]["mae"] for p in PREDICTORS}
    if not all(np.isfinite(list(maes.values()))):
        return {"predictor": None, "says": "too few eligible rows to choose a predictor"}
    best = min(PREDICTORS, key=lambda p: (maes[p], p != "headroom", PREDICTORS.index(p)))
    diff = task_interval([loto[best]["per_task"][t] - loto["headroom"]["per_task"][t]
                          for t in loto[best]["per_task"]])
    x = [r[best] for r in rows]
    slope, intercept = np.polyfit(x, [r["gain"] for r in rows], 1) if np.ptp(x) > 0 else (0, 0)
    out = {"predictor": best, "mae": maes[best], "headroom_mae": maes["headroom"],
           "mean_gain_mae": loto["mean gain"]["mae"], "beats_headroom": best != "headroom",
           "beats_mean_gain": maes[best] < loto["mean gain"]["mae"],
           "difference_from_headroom": diff, "intercept": float(intercept),
           "slope": float(slope)}
    line = f"gain = {intercept:+.1f} {slope:+.1f} x {best} points"
    if not out["beats_mean_gain"]:
        says = (f"no predictor beats the mean gain of the other tasks ({out['mean_gain_mae']:.1f}"
                f" points of error; the best, {best}, {maes[best]:.1f}): lora-prescreen will say "
                "the gain cannot be predicted from the frozen model and print the study's gains")
    elif best == "headroom":
        says = (f"no score beats headroom (1 - probe accuracy; error {maes[best]:.1f} points): "
                f"lora-prescreen will predict the gain from headroom, {line}, and say so")
    else:
        says = (f"lora-prescreen will predict the gain from {best}, {line}, error "
                f"{maes[best]:.1f} points, {-diff['estimate']:.1f} [{-diff['high']:.1f}, "
                f"{-diff['low']:.1f}] less than headroom's")
    return {**out, "says": says}


def write_tables(folder, plan=None):
    """docs/lora_v2/tables.md and study.json from the rows of docs/lora_study.py."""
    study = _sibling("lora_study")
    PLAN, read_rows = study.PLAN, study.read_rows

    from sklearn_ntps._utils import json_text, write_atomic
    from sklearn_ntps.choice.protocol import task_interval

    plan, folder = plan or PLAN, Path(folder)
    rows = read_rows(folder)
    metas = [json.loads(p.read_text()) for p in sorted((folder / "rows").glob("*.json"))]
    groups = json.loads((folder / "groups.json").read_text())
    eligible = [r for r in rows if r["eligible"]]
    commits = sorted({(m["provenance"]["commit"][:10], m["provenance"]["uncommitted_changes"])
                      for m in metas})
    md = ["## Run", "", f"{len(rows)} (task, model) jobs, "
          f"{sum(m['seconds'] for m in metas) / 60:.0f} minutes of job time "
          f"({sum(m['lora_seconds'] for m in metas) / 60:.0f} in LoRA fits); code: "
          + "; ".join(f"commit {c}" + (" + uncommitted changes" if u else "") for c, u in commits),
          "", *(f"Failed: {p.stem}: {p.read_text()}" for p in sorted((folder / "rows").glob(
              "*.error")) if not p.with_suffix(".csv").exists()), "", "## Population", "",
          f"Groups chosen on {groups['centroid_model']}'s centroids.", ""]
    first = {}
    for m in metas:
        first.setdefault(m["task"], m)
    md += _table(["task", "source", "classes", "train / test", "median tokens (truncated)"],
                 [(t, m["source"], ", ".join(m["classes"] or [str(m["n_classes"])]),
                   f"{m['n_train']} / {m['n_test']}",
                   "; ".join(f"{n['model']}: {n['median_tokens']:.0f} "
                             f"({100 * n['truncated_share']:.0f}%)"
                             for n in metas if n["task"] == t)) for t, m in first.items()])
    low, high = plan["eligible"]
    md += ["", "## Per task and model", "", f"Eligible: the probe's 3-fold CV accuracy on the "
           f"training texts in [{low}, {high}]; {len(eligible)} of {len(rows)} rows. Accuracy "
           "held out; gain in points; NTPS and peers on the training texts.", ""]
    md += _table(["task", "model", "probe CV", "eligible", "probe", "LoRA", "gain",
                  "NTPS before", "NTPS after", *PEERS],
                 [(r["task"], r["model"], f"{r['probe_cv_accuracy']:.3f}",
                   "yes" if r["eligible"] else "no", f"{r['probe_accuracy']:.3f}",
                   f"{r['lora_accuracy']:.3f}", f"{r['gain']:+.1f}", f"{r['ntps']:.3f}",
                   f"{r['ntps_after']:.3f}", *(f"{r[p]:.3f}" for p in PEERS)) for r in rows])

    cors = {p: correlations(eligible, p) for p in PREDICTORS}
    md += ["", "## Correlations with the gain", "", f"Over the {len(eligible)} eligible rows. "
           "p: two-sided permutation, 10,000 permutations. Interval: 95%, bootstrap clustered by "
           "source data set, t with (sources - 1) df on the bootstrap SE. Partial: controlling "
           "for the probe's held-out accuracy. The paper: Spearman(NTPS, gain) from "
           f"{PAPER_RANGE[0]:+.2f} to {PAPER_RANGE[1]:+.2f}.", ""]
    md += _table(["predictor", "Spearman [95%]", "p", "partial Spearman [95%]", "p", "paper"],
                 [(p, _cell(c["spearman"]), _p(c["spearman"]["p"]), _cell(c["partial"]),
                   _p(c["partial"]["p"]),
                   f"{PAPER_RANGE[0]:+.2f} to {PAPER_RANGE[1]:+.2f}" if p == "ntps" else "")
                  for p, c in cors.items()])

    loto = {p: leave_one_task_out(eligible, p) for p in PREDICTORS}
    loto["mean gain"] = leave_one_task_out(eligible, None)
    rule = decide(eligible, loto)
    md += ["", "## Leave one task out", "", "Mean absolute error (points) of the gain of a task's "
           "eligible rows, predicted by the least-squares line on the other tasks' rows.", ""]
    md += _table(["predictor", "error (points)", *sorted(loto["ntps"]["per_task"])],
                 [(p, f"{v['mae']:.1f}", *(f"{v['per_task'][t]:.1f}"
                                           for t in sorted(v["per_task"])))
                  for p, v in loto.items()])
    md += ["", "## What lora-prescreen will say", "", rule["says"] + ".", ""]

    rises = {}
    for r in rows:
        blocks = [r[f"ntps_after_b{i}"] - r[f"ntps_before_b{i}"] for i in range(plan["n_blocks"])]
        rises[r["task"], r["model"]] = task_interval(blocks, n_boot=None)
    excl = [k for k, c in rises.items() if c["low"] > 0 or c["high"] < 0]
    up = [k for k in excl if rises[k]["low"] > 0]
    md += ["## NTPS after LoRA", "", f"Rise = NTPS after - before on each of {plan['n_blocks']} "
           "stratified blocks of the training texts; mean with a t interval over the blocks. "
           f"The interval excludes 0 for {len(excl)} of {len(rises)} (task, model), {len(up)} "
           "of them above.", ""]
    md += _table(["task", "model", "NTPS before", "after", "rise (all texts)",
                  "block rise [95%]"],
                 [(r["task"], r["model"], f"{r['ntps']:.3f}", f"{r['ntps_after']:.3f}",
                   f"{r['ntps_rise']:+.3f}", _cell(rises[r["task"], r["model"]], "{:+.3f}"))
                  for r in rows])
    data = {"provenance": [m["provenance"] for m in metas], "groups": groups, "rows": rows,
            "correlations": cors, "leave_one_task_out": loto, "rule": rule,
            "rise": [{"task": t, "model": m, **c} for (t, m), c in rises.items()],
            "rise_excludes_zero": len(excl), "rise_above_zero": len(up),
            "paper_range": PAPER_RANGE}
    write_atomic(folder / "study.json", json_text(data))
    write_atomic(folder / "tables.md", "\n".join(md) + "\n")
    write_atomic(folder / "study.png", plot_study(data))
    print("\n".join(md))
    return data



def plot_study(data) -> bytes:
    """The gain against each predictor (eligible rows filled, the others hollow, one marker per
    model, the rule's line on its predictor) and NTPS's rise after LoRA with its block interval.
    Drawn from ``study.json`` only, after the analysis: it shows the numbers, it decides nothing."""
    import io

    from matplotlib.figure import Figure

    rows, rule = data["rows"], data["rule"]
    models = sorted({r["model"] for r in rows})
    fig = Figure(figsize=(17, 8.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, p in zip(axes, PREDICTORS):
        for model, marker in zip(models, "os^D"):
            for eligible in (1, 0):
                sel = [r for r in rows if r["model"] == model and r["eligible"] == eligible]
                ax.scatter([r[p] for r in sel], [r["gain"] for r in sel], marker=marker,
                           facecolors="tab:blue" if eligible else "none", edgecolors="tab:blue",
                           label=f"{model}{'' if eligible else ' (not eligible)'}")
        if rule.get("predictor") == p and np.isfinite(rule.get("slope", np.nan)):
            x = np.array([r[p] for r in rows if r["eligible"]])
            if x.size:
                grid = np.linspace(x.min(), x.max(), 2)
                used = "" if rule.get("beats_mean_gain") else " (unused: no better than the mean)"
                ax.plot(grid, rule["intercept"] + rule["slope"] * grid, "k--", lw=1,
                        label=f"the rule's line{used}")
                ax.legend(fontsize="x-small", loc="best")
        c, err = data["correlations"][p]["spearman"], data["leave_one_task_out"][p]["mae"]
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel=p, ylabel="gain of LoRA over the probe (points)",
               title=f"Spearman {_cell(c)}; held-out error {err:.1f} pts")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small", loc="upper right")
    ax = axes[-1]
    rises = data["rise"]
    y = np.arange(len(rises))
    est = np.array([r["estimate"] for r in rises])
    ax.errorbar(est, y, xerr=[est - np.array([r["low"] for r in rises]),
                              np.array([r["high"] for r in rises]) - est],
                fmt="o", color="tab:green", ms=3, lw=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r['task']} / {r['model'][:8]}" for r in rises], fontsize="xx-small")
    ax.set(xlabel="NTPS after LoRA - before (mean over 5 blocks, 95% t interval)",
           title=f"NTPS rose: interval above 0 for {data['rise_above_zero']} of {len(rises)}")
    ax.grid(alpha=0.3)
    fig.suptitle("LoRA study v2: does a score of the frozen model predict LoRA's gain? "
                 f"({sum(r['eligible'] for r in rows):.0f} eligible rows of {len(rows)})",
                 fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _table(header, rows):
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _cell(c, f="{:+.2f}"):
    if not np.isfinite(c.get("estimate", np.nan)):
        return "n/a"
    text = f.format(c["estimate"])
    return text + (f" [{f.format(c['low'])}, {f.format(c['high'])}]"
                   if np.isfinite(c.get("low", np.nan)) else "")


def _p(p):
    return "n/a" if not np.isfinite(p) else f"{p:.4f}"


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, name)


if __name__ == "__main__":
    main(sys.argv[1])
