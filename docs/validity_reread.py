"""The validity study re-read (docs/validity.md, section 4): the stored rows under two-way
resampling, the probe's own noise floor, and rule M, the default for choosing among models.

No model runs. This script and the functions of ``sklearn_ntps.evidence.study`` it calls were fixed,
with section 4, before any of its numbers existed::

    python docs/validity_reread.py                       # writes docs/validity/reread.{json,md}
    python docs/validity_reread.py --rows DIR --out DIR  # other rows (the tests' synthetic ones)

``--rows`` is a folder of the study's row files (``*.csv``); rule A's leave-one-out reads
``stability.json`` beside it, and is left out, saying why, when that or rule A's columns are
missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from sklearn_ntps._utils import finite_json, write_atomic
from sklearn_ntps.choice.protocol import BASELINES, task_interval
from sklearn_ntps.evidence.provenance import provenance
from sklearn_ntps.evidence.reread import (
    MODEL_CHOICE_AXES,
    lowest_share,
    model_choice_default,
    noise_floor,
    probe_best_layers,
    random_regrets,
    two_way_interval,
    variance_explained,
)
from sklearn_ntps.evidence.study import (
    leave_one_dataset_out,
    per_replicate,
    rule_a,
    table_wins,
    task_table,
)

HERE = Path(__file__).parent
ROWS, OUT = HERE / "validity" / "rows", HERE / "validity"
# The protocol (section 4): the study tables' score columns, then its two fixed rules.
SCORES = ("ntps", "ntps_paper", "ntps_paper_exact", "logme", "hscore", "transrate", "rankme",
          "knn", "ridge_loo")
CANDIDATES = (*SCORES, *BASELINES)
# The tables' order of the models: the decoder first.
MODELS = ("SmolLM2-135M", "all-MiniLM-L6-v2", "all-mpnet-base-v2")
DECODER = "SmolLM2-135M"
# Rule M's tie-break, cheapest first (section 4 gives the reasons, from the code).
CHEAPNESS = ("rankme", "hscore", "logme", "transrate", "ridge_loo", "knn", "ntps", "ntps_paper",
             "ntps_paper_exact")
N_BOOT, SEED = 2000, 0
# Rule A's eligibility: a move below 1% under 1e-6 noise (section 1; docs/validity_tables.py).
STABLE = 0.01
NAMES = {"ntps": "NTPS (defaults)", "ntps_paper": "NTPS, paper's variant",
         "ntps_paper_exact": "NTPS, paper's exact form", "logme": "LogME", "hscore": "H-score",
         "transrate": "TransRate", "rankme": "RankMe", "knn": "k-NN (3-NN LOO)",
         "ridge_loo": "ridge LOO probe"}


def read_rows(folder) -> list:
    """Every row of the ``*.csv`` files in ``folder``, typed as the study reads them."""
    rows = []
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append({k: v if k in ("model", "dataset") else
                             int(v) if k in ("layer", "replicate") else float(v)
                             for k, v in r.items()})
    return rows


def _mean(values_by_task) -> float:
    v = np.array(list(values_by_task.values()), dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _models(rows) -> list:
    present = {r["model"] for r in rows}
    return [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def _task(task) -> str:
    return f"{task[0]} / {task[1]}"


# ----------------------------------------------------------------- the layer axis
def task_tables(rows) -> dict:
    """Per task (mean over replicates): each candidate's layer regret and Spearman, the noise
    floor, the regret above it, and a random layer's."""
    per_rep = per_replicate(rows, list(CANDIDATES))
    regret = task_table(per_rep, CANDIDATES, "layer_regret")
    floor = noise_floor(rows)
    return {"per_rep": per_rep, "regret": regret, "floor": floor,
            "spearman": task_table(per_rep, SCORES, "layer_spearman"),
            "above": {c: {t: v - floor[t] for t, v in regret[c].items()} for c in CANDIDATES},
            "random": random_regrets(rows)["layer_regret"], "best": probe_best_layers(rows)}


def _intervals(n_boot):
    def two(values):
        return two_way_interval(values, n_boot=n_boot, random_state=SEED)

    def one(values):
        return task_interval(list(values.values()), n_boot=n_boot, random_state=SEED)

    return two, one


def all_tasks(tables, n_boot=N_BOOT) -> dict:
    """Section 4's table 2: every candidate over all tasks, two-way, beside section 3's one-way."""
    two, one = _intervals(n_boot)
    regret = tables["regret"]
    leader = min(CANDIDATES, key=lambda c: (_mean(regret[c]), CANDIDATES.index(c)))
    wins = table_wins(regret, shared=True)
    shares = {"tasks": lowest_share(regret, two_way=False, n_boot=n_boot, random_state=SEED),
              "two_way": lowest_share(regret, n_boot=n_boot, random_state=SEED)}
    out = {}
    for c in CANDIDATES:
        cell = {"regret": two(regret[c]), "regret_one_way": one(regret[c]),
                "regret_variance_explained": variance_explained(regret[c]),
                "above_floor": two(tables["above"][c]),
                "more_than_leader": None if c == leader else two(
                    {t: v - regret[leader][t] for t, v in regret[c].items()}),
                "wins": wins[c], "lowest_share_tasks": shares["tasks"][c],
                "lowest_share_two_way": shares["two_way"][c]}
        if c in SCORES:
            spear = tables["spearman"][c]
            cell.update(spearman=two(spear), spearman_one_way=one(spear),
                        spearman_variance_explained=variance_explained(spear))
        out[c] = cell
    best = tables["best"]
    return {"leader": leader, "candidates": out, "noise_floor": two(tables["floor"]),
            "noise_floor_one_way": one(tables["floor"]), "random_layer": two(tables["random"]),
            "same_best_layer": sum(len(set(v)) == 1 for v in best.values()), "n_tasks": len(best)}


def by_model(tables, models, n_boot=N_BOOT) -> dict:
    """Section 4's table 1: each model alone, over its data sets (one-way, t)."""
    _, one = _intervals(n_boot)
    out = {}
    for m in models:
        def mine(table, m=m):
            return {t: v for t, v in table.items() if t[0] == m}

        regret = {c: mine(tables["regret"][c]) for c in CANDIDATES}
        wins = table_wins(regret, shared=True)
        share = lowest_share(regret, two_way=False, n_boot=n_boot, random_state=SEED)
        cells = {c: {"regret": one(regret[c]), "above_floor": one(mine(tables["above"][c])),
                     "wins": wins[c], "lowest_share": share[c]} for c in CANDIDATES}
        for c in SCORES:
            cells[c]["spearman"] = one(mine(tables["spearman"][c]))
        best = mine(tables["best"])
        out[m] = {"candidates": cells, "noise_floor": one(mine(tables["floor"])),
                  "random_layer": one(mine(tables["random"])),
                  "same_best_layer": sum(len(set(v)) == 1 for v in best.values()),
                  "n_datasets": len(best)}
    return out


# ----------------------------------------------------------------- choosing among models
def choosing_models(rows, per_rep, n_boot=N_BOOT) -> dict:
    """Rule M and the table it reads: per data set, in-sample, one-way over the data sets."""
    _, one = _intervals(n_boot)
    rule = model_choice_default(rows, list(SCORES), list(CHEAPNESS), n_boot=n_boot)
    pair_axis, model_axis = MODEL_CHOICE_AXES
    tables = {axis: task_table(per_rep, SCORES, axis) for axis in
              (*MODEL_CHOICE_AXES, "model_spearman", "dataset_spearman")}
    wins = table_wins(tables[pair_axis], shared=True)
    share = lowest_share(tables[pair_axis], two_way=False, n_boot=n_boot, random_state=SEED)
    scores = {c: {"pair_regret": one(tables[pair_axis][c]),
                  "pair_more_than_leader": rule["differences"][pair_axis].get(c),
                  "model_regret": one(tables[model_axis][c]),
                  "model_more_than_leader": rule["differences"][model_axis].get(c),
                  "pair_spearman": one(tables["model_spearman"][c]),
                  "dataset_spearman": one(tables["dataset_spearman"][c]),
                  "wins": wins[c], "lowest_share": share[c], "cost_rank": CHEAPNESS.index(c) + 1}
              for c in SCORES}
    chance = random_regrets(rows)
    rule = {k: rule[k] for k in ("default", "separated", "tied", "leaders", "behind")}
    return {"rule": {**rule, "outcome": rule_m_text(rule)}, "scores": scores,
            "random_pair": one(chance["pair_regret"]), "random_model": one(chance["model_regret"])}


def rule_m_text(rule) -> str:
    """Rule M's outcome in words."""
    pair_axis, model_axis = MODEL_CHOICE_AXES
    behind = (f"behind the leader on the (model, layer) axis: "
              f"{', '.join(rule['behind'][pair_axis]) or 'none'}; on the model axis: "
              f"{', '.join(rule['behind'][model_axis]) or 'none'}")
    if rule["separated"]:
        return (f"**{rule['default']}** is separated: every other score is behind it on at "
                f"least one axis ({behind}). It becomes the default for choosing among models.")
    return (f"**No score is separated.** Behind on neither axis: {', '.join(rule['tied'])} "
            f"({behind}). By the rule the default for choosing among models is the cheapest of "
            f"them, **{rule['default']}**; the evidence does not rank it above the others.")


# ----------------------------------------------------------------- leave one data set out
def named(lodo, in_sample) -> dict:
    """A leave-one-data-set-out result with the name it has earned.

    Where every fold chose the same, the held-out folds only re-score that choice on the data
    it was also chosen on with the others: the figure is the choice's in-sample one
    (``in_sample``), and is named so.
    """
    choices = sorted({str(f["choice"]) for f in lodo["folds"].values()})
    if len(choices) == 1:
        text = (f"in-sample: every fold chose {choices[0]}, so this is {choices[0]}'s figure on "
                f"all the data sets (in-sample {in_sample:.3g}), not a held-out estimate of the "
                "rule")
        kind = "in-sample"
    else:
        text = f"held out: the folds chose {', '.join(choices)}"
        kind = "held-out"
    return {**lodo, "kind": kind, "label": text, "in_sample": in_sample}


def lodo_rule_b(rows) -> dict:
    """Rule B's pick (the lowest mean layer regret) on the other data sets, scored on each."""
    candidates = list(CANDIDATES)

    def regrets(r, names):
        table = task_table(per_replicate(r, names), names, "layer_regret")
        return {c: _mean(table[c]) for c in names}

    def pick(r):
        mean = regrets(r, candidates)
        return min(candidates, key=lambda c: (np.inf if np.isnan(mean[c]) else mean[c],
                                              candidates.index(c)))

    lodo = leave_one_dataset_out(rows, pick, lambda r, c: regrets(r, [c])[c])
    choice = pick(rows)
    return named(lodo, regrets(rows, [choice])[choice])


def _validity_study():
    """docs/validity_study.py as a module, from its path: rule A's configurations."""
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(__file__, "validity_study")


def lodo_rule_a(rows, stability) -> dict:
    """Rule A on the other data sets, its choice's criterion on each; None with the reason
    when the rows or the stability check are missing."""
    study = _validity_study()
    names = {study.config_name(**c): c for c in study.configs()}
    if stability is None or not set(names) <= set(rows[0]):
        return {"available": False, "why": "no stability.json beside the rows, or no rule A "
                "columns in them"}
    eligible = {n for n in names if stability[n] < STABLE}

    def rule(r):
        return rule_a(r, names, eligible=eligible, current=study.CURRENT, margin=study.MARGIN)

    lodo = leave_one_dataset_out(rows, lambda r: rule(r)[0],
                                 lambda r, choice: rule(r)[1].get(choice, np.nan))
    winner, crit = rule(rows)
    return {"available": True, **named(lodo, crit.get(winner, np.nan))}


# ----------------------------------------------------------------- everything
def reread(rows, *, stability=None, n_boot=N_BOOT) -> dict:
    """Every figure of section 4, from the rows alone."""
    tables = task_tables(rows)
    models = _models(rows)
    tasks = sorted(tables["floor"])
    return {
        "protocol": {"n_boot": n_boot, "seed": SEED, "confidence": 0.95,
                     "two_way_df": "min(models, data sets) - 1", "scores": list(SCORES),
                     "candidates": list(CANDIDATES), "cheapness": list(CHEAPNESS),
                     "decoder": DECODER},
        "population": {"rows": len(rows), "models": models,
                       "datasets": sorted({r["dataset"] for r in rows}),
                       "replicates": sorted({r["replicate"] for r in rows}), "tasks": len(tasks)},
        "by_model": by_model(tables, models, n_boot),
        "all_tasks": all_tasks(tables, n_boot),
        "choosing_models": choosing_models(rows, tables["per_rep"], n_boot),
        "leave_one_dataset_out": {"rule_b": lodo_rule_b(rows),
                                  "rule_a": lodo_rule_a(rows, stability)},
        "tasks": {_task(t): {"noise_floor": tables["floor"][t],
                             "probe_best_layers": tables["best"][t],
                             "layer_regret": {c: tables["regret"][c].get(t) for c in CANDIDATES},
                             "layer_spearman": {c: tables["spearman"][c].get(t)
                                                for c in SCORES}} for t in tasks},
    }


# ----------------------------------------------------------------- the page
def fmt(cell, points=False) -> str:
    """``estimate [low, high]``; n/a where there is none."""
    if cell is None or not np.isfinite(cell.get("estimate", np.nan)):
        return "n/a"
    f = "{:.1f}" if points else "{:+.2f}"
    text = f.format(cell["estimate"])
    if np.isfinite(cell.get("low", np.nan)):
        text += f" [{f.format(cell['low'])}, {f.format(cell['high'])}]"
    return text


def _share(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"


def _wins(x) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _name(c) -> str:
    return NAMES.get(c, c)


def table(header, rows) -> list:
    """A Markdown table; a ``|`` in a cell (rule A's configuration names) is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def markdown(data) -> str:
    md = ["# The validity study re-read (docs/validity.md, section 4)", ""]
    md += _run_lines(data) + _model_lines(data) + _all_lines(data) + _choice_lines(data)
    md += _lodo_lines(data) + _readme_lines(data) + _task_lines(data)
    return "\n".join(md) + "\n"


def _run_lines(data) -> list:
    pop, prov, proto = data["population"], data.get("provenance") or {}, data["protocol"]
    code = "code: " + (f"commit {prov['commit'][:10]}" if prov.get("commit") else "not in git")
    if prov.get("changed_files"):
        code += f" + {len(prov['changed_files'])} changed file(s)"
    if prov.get("package") and Path(prov["package"]).is_absolute():
        code += f", but the package ran from {prov['package']}"
    return ["## Run", "", f"{pop['rows']} rows: {len(pop['models'])} models x "
            f"{len(pop['datasets'])} data sets = {pop['tasks']} tasks, replicates "
            f"{', '.join(map(str, pop['replicates']))}; {code}. Bootstrap: {proto['n_boot']} "
            f"resamples, seed {proto['seed']}. Regret in accuracy points; intervals 95%.", ""]


def _model_lines(data) -> list:
    md = ["## 1. Per model: choosing a layer", "",
          "Each model over its data sets: intervals from a bootstrap over them, Student's t. "
          "Spearman's chance level is 0; a layer drawn at random is the regret's.", ""]
    for m, cell in data["by_model"].items():
        cands = cell["candidates"]
        kind = " (the study's only decoder)" if m == data["protocol"]["decoder"] else ""
        md += [f"### {m}{kind}", "",
               f"The probe's noise floor: {fmt(cell['noise_floor'], True)} points; a layer at "
               f"random: {fmt(cell['random_layer'], True)}. The probe's best layer is the same "
               f"in every replicate on {cell['same_best_layer']} of {cell['n_datasets']} data "
               "sets.", ""]
        md += table(["candidate", "layer regret", "above the noise floor", "layer Spearman",
                     f"data sets won (of {cell['n_datasets']}, ties shared)",
                     "lowest-regret share (data-set resamples)"],
                    [(_name(c), fmt(cands[c]["regret"], True), fmt(cands[c]["above_floor"], True),
                      fmt(cands[c].get("spearman")), _wins(cands[c]["wins"]),
                      _share(cands[c]["lowest_share"]))
                     for c in sorted(cands, key=lambda c: _order(cands[c]["regret"]))])
        md += [""]
    return md


def _order(cell) -> float:
    return np.inf if not np.isfinite(cell["estimate"]) else cell["estimate"]


def _all_lines(data) -> list:
    a = data["all_tasks"]
    cands, leader = a["candidates"], a["leader"]
    df = a["noise_floor"].get("df")
    md = ["## 2. All tasks, two-way", "",
          f"Two-way: models and data sets resampled independently, t with {df} degrees of "
          f"freedom (min(models, data sets) - 1). One-way: the {a['n_tasks']} tasks resampled "
          "as independent, t with tasks - 1 (section 3's). \"Explained\": the share of the "
          "variance over tasks that model and data set explain (additive fit).", "",
          f"The probe's noise floor: {fmt(a['noise_floor'], True)} points (one-way "
          f"{fmt(a['noise_floor_one_way'], True)}); a layer at random: "
          f"{fmt(a['random_layer'], True)}. The probe's best layer is the same in every "
          f"replicate on {a['same_best_layer']} of {a['n_tasks']} tasks.", ""]
    md += table(["candidate", "layer regret, two-way", "one-way", "above the noise floor",
                 f"more than {_name(leader)}", "explained", "layer Spearman, two-way",
                 "one-way", "explained", f"tasks won (of {a['n_tasks']}, ties shared)",
                 "lowest-regret share: tasks", "two-way"],
                [(_name(c), fmt(x["regret"], True), fmt(x["regret_one_way"], True),
                  fmt(x["above_floor"], True),
                  "lowest" if c == leader else fmt(x["more_than_leader"], True),
                  _share(x["regret_variance_explained"]), fmt(x.get("spearman")),
                  fmt(x.get("spearman_one_way")), _share(x.get("spearman_variance_explained")),
                  _wins(x["wins"]), _share(x["lowest_share_tasks"]),
                  _share(x["lowest_share_two_way"]))
                 for c, x in sorted(cands.items(), key=lambda kv: _order(kv[1]["regret"]))])
    return [*md, ""]


def _choice_lines(data) -> list:
    ch = data["choosing_models"]
    md = ["## 3. Choosing among models: rule M", "", ch["rule"]["outcome"], "",
          "Per data set, in-sample; intervals over the data sets, t (the three models are the "
          "choice set, not a sample: nothing here generalises to other models). \"(model, "
          "layer)\": the pair `select` returns (its default, best-layer aggregation); "
          "\"model\": the model it picks, at that model's best layer. Spearman across data "
          "sets: over the models, t.", ""]
    s = ch["scores"]
    lead = ch["rule"]["leaders"]
    md += table(["score", "(model, layer) regret", f"more than {_name(lead[MODEL_CHOICE_AXES[0]])}",
                 "model regret", f"more than {_name(lead[MODEL_CHOICE_AXES[1]])}",
                 "Spearman across (model, layer) pairs", "Spearman across data sets",
                 "data sets won ((model, layer), ties shared)", "lowest-regret share",
                 "cost rank"],
                [(_name(c), fmt(x["pair_regret"], True),
                  fmt(x["pair_more_than_leader"], True) if x["pair_more_than_leader"] else
                  "leader", fmt(x["model_regret"], True),
                  fmt(x["model_more_than_leader"], True) if x["model_more_than_leader"] else
                  "leader", fmt(x["pair_spearman"]), fmt(x["dataset_spearman"]), _wins(x["wins"]),
                  _share(x["lowest_share"]), x["cost_rank"])
                 for c, x in sorted(s.items(), key=lambda kv: _order(kv[1]["pair_regret"]))]
                + [("a (model, layer) at random (expected)", fmt(ch["random_pair"], True), "",
                    "", "", "", "", "", "", ""),
                   ("a model at random (expected)", "", "", fmt(ch["random_model"], True), "",
                    "", "", "", "", "")])
    return [*md, ""]


def _lodo_lines(data) -> list:
    md = ["## 4. Leave one data set out", ""]
    titles = {"rule_b": ("Rule B (the lowest mean layer regret)", "its regret there", True),
              "rule_a": ("Rule A (the NTPS defaults)", "its criterion there", False)}
    for key, (title, value, points) in titles.items():
        lodo = data["leave_one_dataset_out"][key]
        if lodo.get("available") is False:
            md += [f"{title}: not computed ({lodo['why']}).", ""]
            continue
        md += [f"{title}: mean {fmt(lodo['mean'], points)}; {lodo['label']}.", ""]
        md += table(["left out", "chosen", value],
                    [(d, f["choice"], fmt({"estimate": f["value"]}, points))
                     for d, f in lodo["folds"].items()])
        md += [""]
    return md


def _readme_lines(data) -> list:
    m = data["protocol"]["decoder"]
    cell = data["by_model"].get(m)
    md = ["## For the README", ""]
    if cell is None:
        return [*md, f"{m} is not among these rows.", ""]
    c = cell["candidates"]
    md += [f"On {m}, the study's only decoder (so every decoder conclusion rests on this one "
           f"model), over its {cell['n_datasets']} data sets (95% intervals over them): the "
           f"probe's own noise floor is {fmt(cell['noise_floor'], True)} points.", ""]
    md += table(["candidate", "layer Spearman", "layer regret", "above the noise floor"],
                [(_name(k), fmt(x.get("spearman")), fmt(x["regret"], True),
                  fmt(x["above_floor"], True))
                 for k, x in sorted(c.items(), key=lambda kv: _order(kv[1]["regret"]))])
    return [*md, "", "Choosing among models: " + data["choosing_models"]["rule"]["outcome"], ""]


def _task_lines(data) -> list:
    md = ["## Per task: the probe's best layer in each replicate and the noise floor", ""]
    md += table(["model / data set", "best layer by replicate", "noise floor (points)"],
                [(t, " ".join(map(str, x["probe_best_layers"])),
                  fmt({"estimate": x["noise_floor"]}, True)) for t, x in data["tasks"].items()])
    return [*md]


# ----------------------------------------------------------------- the command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, default=ROWS, help="folder of the study's *.csv rows")
    parser.add_argument("--out", type=Path, default=OUT, help="where reread.json and .md go")
    args = parser.parse_args(argv)
    rows = read_rows(args.rows)
    if not rows:
        parser.error(f"no rows in {args.rows}")
    path = args.rows.parent / "stability.json"
    stability = json.loads(path.read_text()) if path.exists() else None
    data = {"provenance": provenance(args.out, HERE), **reread(rows, stability=stability)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "reread.json", json.dumps(finite_json(data), indent=1,
                                                      allow_nan=False, default=str) + "\n")
    write_atomic(args.out / "reread.md", markdown(data))
    print(f"wrote {args.out / 'reread.json'} and {args.out / 'reread.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
