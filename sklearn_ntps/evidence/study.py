"""The evidence: correlations and regrets, intervals over tasks, the rules.

Everything here reads one long table, a list of rows with the keys
``model``, ``dataset``, ``layer``, ``replicate``, ``probe_accuracy`` and one
column per score. A replicate is one random partition of a data set's texts
into disjoint training and test blocks
(:func:`sklearn_ntps.choice.protocol.block_partitions`); every score and probe is
refitted on each, and no text is ever repeated.

What a user needs to know generalises over tasks, not over texts, so an
aggregate (a mean over (model, data set) pairs, say) gets its interval from a
bootstrap over those tasks (:func:`task_interval`), with Student's t for the
small number of them; the replicates give the spread beside each estimate.
numpy and scipy only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
from scipy.stats import spearmanr

from ..choice.protocol import (
    AGGREGATIONS,
    BASELINES,
    N_BOOT,
    group_rows,
    model_choice,
    pick_row,
    task_interval,
)

PROBE = "probe_accuracy"
PROBE_TRAIN = "probe_train_accuracy"

# Which tasks each metric's aggregate resamples, from its group key.
_PAIR, _DATASET, _MODEL_OF_GROUP = "pair", "dataset", "model"
_METRIC_UNITS = {
    "layer_spearman": _PAIR, "layer_regret": _PAIR,
    "dataset_spearman": _MODEL_OF_GROUP,
    "model_spearman": _DATASET, "pair_regret": _DATASET,
    **{f"model_regret[{a}]": _DATASET for a in AGGREGATIONS},
    **{f"pair_regret[{a}]": _DATASET for a in AGGREGATIONS},
}


# ----------------------------------------------------------------- one replicate
def spearman(a, b) -> float:
    """Spearman's rho, NaN when either side is constant or has fewer than 3 values.

    The one Spearman of the package: the study's correlations and the LoRA
    prescreen's (:mod:`sklearn_ntps.lora.prescreen`) alike.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import spearman
    >>> spearman([1, 2, 3, 4], [10, 30, 20, 40]), spearman([1, 1, 1], [1, 2, 3])
    (0.8, nan)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def replicate_metrics(rows, scores, baselines=tuple(BASELINES)) -> dict:
    """Every metric of one replicate's rows, keyed by (metric, score, group).

    * per (model, dataset): ``layer_spearman`` (across its layers, with probe
      accuracy), ``layer_regret`` (best accuracy minus the accuracy at the
      layer the score picks) and ``layer_pick``;
    * per (model, layer): ``dataset_spearman``, across data sets;
    * per dataset: ``model_spearman`` across every (model, layer) pair,
      ``pair_regret`` of the pair the score picks among all of them, and for
      each aggregation of a model's layers (``best-layer``: its best score,
      ``layer-mean``: the mean; transformer-ranker's two) the regret of the
      model it picks, ``model_regret[agg]`` (best model's best-layer accuracy
      minus the picked one's), and ``pair_regret[agg]`` of that model at the
      layer the score picks in it.

    Regrets are in accuracy points (0-100).
    """
    out = {}
    for (model, dataset), group in group_rows(rows, ("model", "dataset")).items():
        acc = np.array([r[PROBE] for r in group])
        for score in (*scores, *baselines):
            picked = pick_row(group, score)
            out["layer_regret", score, (model, dataset)] = 100 * float(acc.max() - acc[picked])
            out["layer_pick", score, (model, dataset)] = group[picked]["layer"]
            if score in scores:
                out["layer_spearman", score, (model, dataset)] = spearman(
                    [r[score] for r in group], acc)
    for (model, layer), group in group_rows(rows, ("model", "layer")).items():
        for score in scores:
            out["dataset_spearman", score, (model, layer)] = spearman(
                [r[score] for r in group], [r[PROBE] for r in group])
    for (dataset,), group in group_rows(rows, ("dataset",)).items():
        acc = np.array([r[PROBE] for r in group])
        best_of = {m: max(r[PROBE] for r in g) for (m,), g in group_rows(group, ("model",)).items()}
        for score in scores:
            out["model_spearman", score, dataset] = spearman([r[score] for r in group], acc)
            picked = acc[pick_row(group, score)]
            out["pair_regret", score, dataset] = 100 * float(acc.max() - picked)
            if len(best_of) < 2:
                continue
            for agg in AGGREGATIONS:
                chosen, row = model_choice(group, score, agg)
                out[f"model_regret[{agg}]", score, dataset] = 100 * float(
                    max(best_of.values()) - best_of[chosen[0]["model"]])
                out[f"pair_regret[{agg}]", score, dataset] = 100 * float(acc.max() - row[PROBE])
    return out


# ----------------------------------------------------------------- over replicates and tasks
def group_values(per_rep, metric, score) -> dict:
    """``{group: [value in each replicate]}`` of one metric and score (means excluded)."""
    out = defaultdict(list)
    for m in per_rep:
        for (met, sc, group), value in m.items():
            if met == metric and sc == score:
                out[group].append(value)
    return dict(out)


def nanmean(values) -> float:
    """The mean of the finite values; NaN, without a warning, when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _task_means(groups: dict, unit) -> dict:
    """Per task, the mean over its groups (and over replicates) of one metric."""
    by_task = defaultdict(list)
    for group, values in groups.items():
        by_task[group[0] if unit == _MODEL_OF_GROUP else group].append(nanmean(values))
    return {t: nanmean(v) for t, v in by_task.items()}


def summarize(rows, scores, baselines=tuple(BASELINES), *, n_boot=N_BOOT) -> dict:
    """Every metric per group and its mean over tasks, with intervals and spreads.

    Returns ``{(metric, score, group): cell}``, ``group`` being a group key or
    ``"mean"``. A group's cell holds the mean over replicates (``estimate``)
    and their range (``rep_low``, ``rep_high``); a mean's cell adds the task
    interval of :func:`task_interval` (``se``, ``low``, ``high``, ``n``) and
    the range over replicates of the replicate's own mean. ``layer_pick``
    cells hold the most frequent pick and ``picks``, one per replicate.
    """
    per_rep = [replicate_metrics(group, scores, baselines)
               for _, group in sorted(group_rows(rows, ("replicate",)).items())]
    out = {}
    keys = {(met, sc) for m in per_rep for (met, sc, _) in m}
    for metric, score in sorted(keys, key=str):
        groups = group_values(per_rep, metric, score)
        if metric == "layer_pick":
            for group, picks in groups.items():
                values, counts = np.unique(picks, return_counts=True)
                out[metric, score, group] = {"estimate": int(values[np.argmax(counts)]),
                                             "picks": [int(p) for p in picks]}
            continue
        for group, values in groups.items():
            out[metric, score, group] = _spread(values)
        unit = _METRIC_UNITS[metric]
        cell = task_interval(list(_task_means(groups, unit).values()), n_boot=n_boot)
        rep_means = [nanmean(list(_task_means({g: [v[i]] for g, v in groups.items()},
                                               unit).values()))
                     for i in range(len(per_rep))]
        out[metric, score, "mean"] = {**cell, **_spread(rep_means, "rep_low", "rep_high")}
    return out


def _spread(values, *names):
    """Mean and range of the finite values (NaN when there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    values = (v.mean(), v.min(), v.max()) if v.size else (np.nan,) * 3
    cell = dict(zip(("estimate", "rep_low", "rep_high"), values, strict=True))
    cell = {k: float(x) for k, x in cell.items()}
    return {k: cell[k] for k in names} if names else cell


def per_replicate(rows, candidates) -> list:
    """:func:`replicate_metrics` of each replicate, for scores and baselines alike."""
    scores = [c for c in candidates if c not in BASELINES]
    baselines = [c for c in candidates if c in BASELINES]
    return [replicate_metrics(group, scores, baselines)
            for _, group in sorted(group_rows(rows, ("replicate",)).items())]


def task_table(per_rep, candidates, metric) -> dict:
    """``{candidate: {task: mean over replicates and the task's groups}}`` of one metric."""
    unit = _METRIC_UNITS[metric]
    return {c: _task_means(group_values(per_rep, metric, c), unit) for c in candidates}


def paired_differences(per_rep, candidates, reference, metric="layer_regret", *,
                       n_boot=N_BOOT) -> dict:
    """Per task, ``candidate - reference`` of a metric, averaged with a task interval.

    Positive regret differences mean the candidate loses more accuracy than
    ``reference``. Returns ``{candidate: cell}`` (:func:`task_interval`).
    """
    table = task_table(per_rep, [*candidates, reference], metric)
    ref = table[reference]
    return {c: task_interval([table[c][t] - ref[t] for t in ref], n_boot=n_boot)
            for c in candidates if c != reference}


def wins(per_rep, candidates, metric="layer_regret", *, shared=False) -> dict:
    """How many tasks each candidate has the lowest regret on (:func:`table_wins`).

    A tie counts for each tied candidate or, with ``shared``, a tie of ``k`` gives each ``1 / k``.
    """
    return table_wins(task_table(per_rep, candidates, metric), shared=shared)


def table_wins(table, *, shared=False, tol=1e-9) -> dict:
    """Tasks won in ``{candidate: {task: regret}}``: the lowest regret on each task.

    A tie (within ``tol``) counts 1 for each tied candidate, or, with
    ``shared``, ``1 / k`` for each of the ``k`` tied, so that the wins add up
    to the number of tasks. A candidate without a finite value on a task does
    not win it.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import table_wins
    >>> table = {"a": {1: 0.0, 2: 3.0}, "b": {1: 0.0, 2: 1.0}, "c": {1: 5.0, 2: 2.0}}
    >>> table_wins(table), table_wins(table, shared=True)
    ({'a': 1, 'b': 2, 'c': 0}, {'a': 0.5, 'b': 1.5, 'c': 0.0})
    """
    out = dict.fromkeys(table, 0.0 if shared else 0)
    for task in set().union(*(t.keys() for t in table.values())):
        values = {c: t.get(task, np.nan) for c, t in table.items()}
        finite = [v for v in values.values() if np.isfinite(v)]
        if not finite:
            continue
        best = [c for c, v in values.items() if np.isfinite(v) and v <= min(finite) + tol]
        for c in best:
            out[c] += 1 / len(best) if shared else 1
    return out


# ----------------------------------------------------------------- the rules
def rule_b(rows, candidates, *, n_boot=N_BOOT) -> dict:
    """Rule B of docs/validity.md: the candidate with the lowest mean layer regret.

    Returns ``{"pick", "tied", "separated", "not_separated_from", "differences",
    "regret", "wins"}`` (``tied``: every candidate with the pick's regret, the
    pick first); ``separated`` is True only when the 95% task interval of the
    paired regret difference with every other candidate lies above zero.
    The LoRA prescreen's rule is :func:`sklearn_ntps.lora.prescreen.recommend`.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import rule_b
    >>> rows = [{"model": "m", "dataset": d, "layer": layer, "replicate": 0,
    ...          "probe_accuracy": acc, "good": acc, "bad": -acc}
    ...         for d in "abc" for layer, acc in enumerate([0.5, 0.9, 0.7])]
    >>> rule = rule_b(rows, ["good", "bad", "last layer"])
    >>> rule["pick"], rule["regret"]["bad"]
    ('good', 40.0)
    """
    per_rep = per_replicate(rows, candidates)
    table = task_table(per_rep, candidates, "layer_regret")
    regret = {c: nanmean(list(table[c].values())) for c in candidates}
    pick = min(candidates, key=lambda c: (regret[c], candidates.index(c)))
    diffs = paired_differences(per_rep, candidates, pick, n_boot=n_boot)
    close = [c for c, d in diffs.items() if not d["low"] > 0]
    tied = [c for c in candidates if abs(regret[c] - regret[pick]) < 1e-9]
    return {"pick": pick, "tied": tied, "separated": not close, "not_separated_from": close,
            "differences": diffs, "regret": regret, "wins": wins(per_rep, candidates)}


# The two axes the default for choosing among models is decided on (docs/validity.md,
# section 4): the (model, layer) pair a score picks with select's default aggregation, and the
# model it picks, each scored by the probe, per data set.
def leave_one_dataset_out(rows, choose, evaluate) -> dict:
    """Apply a choosing rule with each data set held out, and score its choice there.

    ``choose(rows)`` returns a choice made on the other data sets' rows;
    ``evaluate(rows, choice)`` returns the choice's value on the held-out
    data set's rows. Returns ``{"folds": {dataset: {"choice", "value"}},
    "mean": task_interval over the held-out data sets}``.
    """
    datasets = sorted({r["dataset"] for r in rows})
    folds = {}
    for held in datasets:
        choice = choose([r for r in rows if r["dataset"] != held])
        folds[held] = {"choice": choice,
                       "value": evaluate([r for r in rows if r["dataset"] == held], choice)}
    return {"folds": folds, "mean": task_interval([f["value"] for f in folds.values()])}


def perturb_moments(moments, eps, rng):
    """Moments with relative noise ``eps`` scaled to each of their coordinates.

    The noise model of the stability check (docs/validity.md): ``C0`` gets
    symmetric noise scaled by ``sqrt(C0_ii C0_jj)``, each entry of ``C1`` and
    each pooled coordinate noise relative to its own size (the pooled ones to
    the coordinate's RMS), as rounding in the hidden states would bring.
    """
    s = np.sqrt(np.diag(moments.c0))
    z = rng.normal(size=moments.c0.shape)
    pooled = moments.pooled
    return replace(
        moments, c0=moments.c0 + eps * (z + z.T) / np.sqrt(2) * np.outer(s, s),
        c1=moments.c1 * (1 + eps * rng.normal(size=moments.c1.shape)),
        pooled=pooled + eps * rng.normal(size=pooled.shape) * np.sqrt((pooled**2).mean(0)),
    )


def rule_a(rows, configs, *, eligible, current, margin=0.05):
    """Rule A of docs/validity.md: the NTPS configuration with the best mean layer Spearman.

    ``configs`` maps a column name to its parameters (a dict); among the
    ``eligible`` columns within ``margin`` of the best mean over tasks, the
    one that changes the fewest parameters from ``current`` wins, then the
    higher mean. Returns ``(winner, {column: mean layer Spearman})``, the winner
    None when no eligible column has a criterion.
    """
    names = list(configs)
    table = task_table(per_replicate(rows, names), names, "layer_spearman")
    crit = {n: nanmean(list(table[n].values())) for n in names}
    best = max((crit[n] for n in names if n in eligible and np.isfinite(crit[n])), default=None)
    if best is None:
        return None, crit
    close = [n for n in names if n in eligible and crit[n] >= best - margin]

    def changes(n):
        return sum(configs[n][key] != value for key, value in current.items())

    return min(close, key=lambda n: (changes(n), -crit[n])), crit


def paper_protocol(rows, k_columns, held_out_column):
    """The paper's protocol beside a held-out one, on the layer and data-set axes.

    The paper's: Spearman with the probe's *training* accuracy, ``k`` (the
    keys of ``k_columns``) chosen per task, and on the data-set axis the
    layer too, to maximise it. The held-out one: ``held_out_column`` (one
    fixed k) against held-out accuracy, every layer counted. Returns, per
    axis, the mean over tasks of both, their paired difference (the optimism)
    and what the paper's choice gives against held-out accuracy.
    """
    out = {}
    layer_tasks = defaultdict(lambda: defaultdict(list))
    for (model, dataset, _), group in group_rows(rows, ("model", "dataset", "replicate")).items():
        train = [r[PROBE_TRAIN] for r in group]
        test = [r[PROBE] for r in group]
        rhos = {k: spearman([r[c] for r in group], train) for k, c in k_columns.items()}
        k = max(rhos, key=lambda key: -np.inf if np.isnan(rhos[key]) else rhos[key])
        cell = layer_tasks[model, dataset]
        cell["paper"].append(rhos[k])
        cell["paper_choice_held_out"].append(spearman([r[k_columns[k]] for r in group], test))
        cell["held_out"].append(spearman([r[held_out_column] for r in group], test))
    out["layers"] = _protocol_cells(layer_tasks)
    data_tasks = defaultdict(lambda: defaultdict(list))
    for (model, _), group in group_rows(rows, ("model", "replicate")).items():
        by_layer = group_rows(group, ("layer",))
        best, choice, held = -np.inf, None, []
        for (layer,), g in by_layer.items():
            g = sorted(g, key=lambda r: r["dataset"])
            held.append(spearman([r[held_out_column] for r in g], [r[PROBE] for r in g]))
            for k, c in k_columns.items():
                rho = spearman([r[c] for r in g], [r[PROBE_TRAIN] for r in g])
                if np.isfinite(rho) and rho > best:
                    best, choice = rho, (layer, k)
        cell = data_tasks[model]
        cell["paper"].append(best if choice else np.nan)
        if choice:
            g = sorted(by_layer[(choice[0],)], key=lambda r: r["dataset"])
            cell["paper_choice_held_out"].append(
                spearman([r[k_columns[choice[1]]] for r in g], [r[PROBE] for r in g]))
        cell["held_out"].append(nanmean(held))
    out["datasets"] = _protocol_cells(data_tasks)
    return out


def _protocol_cells(tasks):
    means = {name: {t: nanmean(v[name]) for t, v in tasks.items()}
             for name in ("paper", "paper_choice_held_out", "held_out")}
    cells = {name: task_interval(list(m.values())) for name, m in means.items()}
    cells["optimism"] = task_interval([means["paper"][t] - means["held_out"][t] for t in tasks])
    return cells
