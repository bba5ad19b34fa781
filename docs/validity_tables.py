"""Every table of docs/validity.md, from the study's rows (``python docs/validity_study.py
--tables``). Writes ``docs/validity/study.json`` and ``docs/validity/tables.md``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from sklearn_ntps._utils import finite_json, write_atomic
from sklearn_ntps.choice.protocol import BASELINES, task_interval
from sklearn_ntps.evidence.study import (
    PROBE,
    leave_one_dataset_out,
    paper_protocol,
    per_replicate,
    rule_a,
    rule_b,
    summarize,
    task_table,
    wins,
)
from sklearn_ntps.scores.registry import default_scorers

SCORES = list(default_scorers())
AXES = [("layer_spearman", "layers: Spearman", False), ("layer_regret", "layers: regret", True),
        ("dataset_spearman", "data sets: Spearman", False),
        ("model_spearman", "(model, layer) pairs: Spearman", False),
        ("pair_regret", "(model, layer) pairs: regret", True)]
SELECTION = [("model_regret[best-layer]", "model, best layer"),
             ("model_regret[layer-mean]", "model, layer mean"),
             ("pair_regret[best-layer]", "(model, layer), best layer"),
             ("pair_regret[layer-mean]", "(model, layer), layer mean")]


def fmt(cell, points=False):
    if cell is None or not np.isfinite(cell.get("estimate", np.nan)):
        return "n/a"
    f = "{:.1f}" if points else "{:+.2f}"
    text = f.format(cell["estimate"])
    if np.isfinite(cell.get("low", np.nan)):
        text += f" [{f.format(cell['low'])}, {f.format(cell['high'])}]"
    if "rep_low" in cell and cell["rep_low"] != cell["rep_high"]:
        text += f" ({f.format(cell['rep_low'])} .. {f.format(cell['rep_high'])})"
    return text


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def write_tables(folder: Path):
    study = _sibling("validity_study")
    CURRENT, KS, MARGIN, PAPER_KS = study.CURRENT, study.KS, study.MARGIN, study.PAPER_KS
    config_name, configs, paper_name, read_rows = (
        study.config_name, study.configs, study.paper_name, study.read_rows)

    rows = read_rows(folder)
    metas = [json.loads(p.read_text()) for p in sorted((folder / "rows").glob("*.json"))]
    candidates = [*SCORES, *BASELINES]
    summary = summarize(rows, SCORES)
    per_rep = per_replicate(rows, candidates)
    rec = rule_b(rows, candidates)
    md, data = [], {"provenance": sorted({json.dumps(m["provenance"], sort_keys=True)
                                          for m in metas})}

    md += ["## Run", "", f"{len(metas)} (data set, model) jobs, "
           f"{sum(m['seconds'] for m in metas) / 60:.0f} minutes of job time in all; code: "
           + "; ".join(f"commit {json.loads(p)['commit'][:10]}"
                       + (" + uncommitted changes" if json.loads(p)["uncommitted_changes"] else "")
                       for p in data["provenance"]), ""]
    md += ["## Population", ""]
    by_dataset = {}
    for m in metas:
        by_dataset.setdefault(m["dataset"], []).append(m)
    md += table(["data set", "texts", "classes", "training texts", "median tokens (truncated "
                 "beyond 64)"],
                [(d, ms[0]["n_texts"], ms[0]["n_classes"], "/".join(map(str, ms[0]["n_train"])),
                  "; ".join(f"{m['model']}: {m['median_tokens']:.0f} "
                            f"({100 * m['truncated_share']:.0f}%)" for m in ms))
                 for d, ms in sorted(by_dataset.items())])

    # ---------------------------------------------------------- the probe
    best = task_table(per_rep, ["last layer"], "layer_regret")  # only for the task list
    cs = Counter(r["probe_C"] for r in rows)
    md += ["", "## The probe", "", "C chosen by 3-fold cross-validation: " + ", ".join(
        f"{c:g} ({n})" for c, n in sorted(cs.items())), ""]
    acc = {}
    for (model, dataset) in sorted(best["last layer"]):
        mine = [r for r in rows if (r["model"], r["dataset"]) == (model, dataset)]
        reps = sorted({r["replicate"] for r in mine})
        tops = [max(r[PROBE] for r in mine if r["replicate"] == rep) for rep in reps]
        acc[model, dataset] = tops
    md += table(["model / data set", "best layer's held-out accuracy (replicates)"],
                [(f"{m} / {d}", " ".join(f"{a:.3f}" for a in v)) for (m, d), v in acc.items()])

    # ---------------------------------------------------------- rule A
    names = {config_name(**c): c for c in configs()}
    moves = json.loads((folder / "stability.json").read_text())
    eligible = {n for n in names if moves[n] < 0.01}
    winner, crit = rule_a(rows, names, eligible=eligible, current=CURRENT, margin=MARGIN)
    lodo_a = leave_one_dataset_out(
        rows, lambda r: rule_a(r, names, eligible=eligible, current=CURRENT, margin=MARGIN)[0],
        lambda r, choice: rule_a(r, names, eligible=eligible, current=CURRENT,
                                 margin=MARGIN)[1].get(choice, np.nan))
    spear = task_table(per_replicate(rows, list(names)), list(names), "layer_spearman")
    md += ["", "## Rule A: the NTPS defaults", "",
           f"Stability: largest relative move under 1e-6 noise {max(moves[n] for n in names):.2%}"
           f"; eligible {len(eligible)} of {len(names)}. Winner: **{winner}** "
           f"(criterion {crit.get(winner, np.nan):+.3f}).", ""]
    md += table(["configuration", "mean layer Spearman over tasks [95%]", "eligible"],
                [(n, fmt(task_interval(list(spear[n].values()))), n in eligible)
                 for n in sorted(crit, key=crit.get, reverse=True)])
    md += ["", "Leave one data set out (chosen on the other nine, scored on the one left out): "
           f"mean {fmt(lodo_a['mean'])}.", ""]
    md += table(["left out", "chosen", "its criterion there"],
                [(d, f["choice"], f"{f['value']:+.3f}") for d, f in lodo_a["folds"].items()])

    # ---------------------------------------------------------- rule B
    def pick(r):
        return rule_b(r, candidates, n_boot=200)["pick"]

    def regret_there(r, choice):
        table_ = task_table(per_replicate(r, candidates), [choice], "layer_regret")[choice]
        return float(np.nanmean(list(table_.values())))

    lodo_b = leave_one_dataset_out(rows, pick, regret_there)
    md += ["", "## Rule B: the score the report recommends", "",
           f"Lowest mean layer regret: **{rec['pick']}**; "
           + ("its interval separates from every other candidate." if rec["separated"] else
              "not separated from: " + ", ".join(rec["not_separated_from"]) + "."), ""]
    md += table(["candidate", "mean layer regret, points [95%]", "more than the pick [95%]",
                 f"tasks won (of {len(best['last layer'])})"],
                [(c, fmt(summary.get(("layer_regret", c, "mean")) or task_interval(
                    list(task_table(per_rep, [c], "layer_regret")[c].values())), True),
                  "pick" if c == rec["pick"] else fmt(rec["differences"][c], True),
                  rec["wins"][c]) for c in sorted(candidates, key=rec["regret"].get)])
    md += ["", "Leave one data set out: the rule's pick on the other nine, its regret on the one "
           f"left out; mean {fmt(lodo_b['mean'], True)} points.", ""]
    md += table(["left out", "picked", "its regret there (points)"],
                [(d, f["choice"], f"{f['value']:.1f}") for d, f in lodo_b["folds"].items()])

    # ---------------------------------------------------------- every score, every axis
    md += ["", "## Every score on every axis", "",
           "Mean over tasks [95% interval from a bootstrap over tasks, t] (range over the "
           "replicates). Tasks: (model, data set) pairs on the layer axis, models on the data-set "
           "axis, data sets on the (model, layer) axis. Regret in accuracy points.", ""]
    md += table(["score", *(title for _, title, _ in AXES), "layer tasks won"],
                [(c, *(fmt(summary.get((m, c, "mean")), p) if c in SCORES or m == "layer_regret"
                       else "n/a" for m, _, p in AXES), rec["wins"][c]) for c in candidates])
    md += ["", "### Choosing a model (and its layer) per data set", "",
           "Regret in accuracy points of the choice each score makes among the three models, "
           "aggregating a model's layers by its best score or by their mean (transformer-ranker's "
           "two options), over the data sets [95%].", ""]
    random_model = task_interval([np.mean(v) for v in _random_model_regret(rows).values()])
    sel_wins = {m: wins(per_rep, SCORES, m) for m, _ in SELECTION}
    md += table(["score", *(t for _, t in SELECTION), "data sets won (model, best layer)"],
                [(c, *(fmt(summary.get((m, c, "mean")), True) for m, _ in SELECTION),
                  sel_wins["model_regret[best-layer]"][c]) for c in SCORES]
                + [("a model at random (expected)", fmt(random_model, True), "", "", "", "")])

    # ---------------------------------------------------------- the paper's protocol
    k_cols = {k: paper_name(k) for k in PAPER_KS}
    paper = paper_protocol(rows, k_cols, paper_name(0.25))
    ours = paper_protocol(rows, k_cols, "ntps")
    md += ["", "## The paper's protocol against the held-out one", "",
           "NTPS in the paper's exact form. Paper: Spearman with the probe's training accuracy, "
           "k (" + ", ".join(map(str, PAPER_KS)) + ") chosen per task, and on the data-set axis "
           "the layer too, to maximise it. Held out: k = 0.25 fixed, held-out accuracy, every "
           "layer.", ""]
    md += table(["axis", "paper's protocol", "its choice, held-out accuracy", "held-out protocol",
                 "optimism (paper - held out)", "NTPS default, held out"],
                [(axis, fmt(c["paper"]), fmt(c["paper_choice_held_out"]), fmt(c["held_out"]),
                  fmt(c["optimism"]), fmt(ours[axis]["held_out"]))
                 for axis, c in paper.items()])

    # ---------------------------------------------------------- per task
    md += ["", "## Per task: Spearman across layers (mean over replicates)", ""]
    groups = sorted(best["last layer"])
    md += table(["model / data set", *SCORES],
                [(f"{m} / {d}", *(f"{summary[('layer_spearman', c, (m, d))]['estimate']:+.2f}"
                                  for c in SCORES)) for m, d in groups])
    md += ["", "## Per task: the layer each score picks (most frequent over replicates) and its "
           "mean regret in points", ""]
    md += table(["model / data set", *candidates],
                [(f"{m} / {d}", *(f"{summary[('layer_pick', c, (m, d))]['estimate']} "
                                  f"({summary[('layer_regret', c, (m, d))]['estimate']:.1f})"
                                  for c in candidates)) for m, d in groups])

    data.update({"summary": [{"metric": m, "score": s, "group": g if isinstance(g, str) else
                              list(g), **cell} for (m, s, g), cell in summary.items()],
                 "rule_a": {"winner": winner, "criterion": crit, "eligible": sorted(eligible),
                            "moves": moves, "leave_one_dataset_out": lodo_a},
                 "rule_b": {**rec, "leave_one_dataset_out": lodo_b},
                 "paper_protocol": paper, "default_protocol": ours,
                 "random_model_regret": random_model, "ks": list(KS)})
    write_atomic(folder / "study.json", json.dumps(finite_json(data), indent=1,
                                                   allow_nan=False, default=str))
    write_atomic(folder / "tables.md", "\n".join(md) + "\n")
    print("\n".join(md))


def _random_model_regret(rows):
    """Per data set and replicate: the expected model regret of a uniformly random model."""
    out = {}
    for d in sorted({r["dataset"] for r in rows}):
        reps = []
        for rep in sorted({r["replicate"] for r in rows}):
            best = {}
            for r in rows:
                if r["dataset"] == d and r["replicate"] == rep:
                    best[r["model"]] = max(best.get(r["model"], 0.0), r[PROBE])
            top = max(best.values())
            reps.append(100 * np.mean([top - b for b in best.values()]))
        out[d] = reps
    return out


def _sibling(name):
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, name)


if __name__ == "__main__":
    write_tables(Path(__file__).parent / "validity")
