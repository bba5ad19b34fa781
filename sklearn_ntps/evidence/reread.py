"""The re-read's statistics: intervals over two crossed factors, the ground truth's noise, rule M.

docs/validity.md section 4 re-reads the validity study's rows under a protocol
fixed before its numbers: models and data sets are resampled independently
(the tasks are their crossing, not independent draws), the probe's own noise
sets a floor under every regret, and rule M picks the score that chooses
among models. Reads the long table of :mod:`sklearn_ntps.evidence.study`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.stats import t as student_t

from ..choice.protocol import N_BOOT, group_rows
from .study import PROBE, nanmean, paired_differences, per_replicate, task_table

__all__ = ["MODEL_CHOICE_AXES", "lowest_share", "model_choice_default", "noise_floor",
           "probe_best_layers", "random_regrets", "resample_weights", "two_way_interval",
           "variance_explained"]


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
    >>> from sklearn_ntps.evidence.reread import resample_weights
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
    >>> from sklearn_ntps.evidence.reread import two_way_interval
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
    >>> from sklearn_ntps.evidence.reread import lowest_share
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
    >>> from sklearn_ntps.evidence.reread import variance_explained
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
    for task, group in group_rows(rows, ("model", "dataset")).items():
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
    >>> from sklearn_ntps.evidence.reread import noise_floor
    >>> accs = [[0.5, 0.75, 0.625], [0.5, 0.625, 0.75]]
    >>> rows = [{"model": "m", "dataset": "d", "layer": layer, "replicate": rep,
    ...          "probe_accuracy": a} for rep, acc in enumerate(accs)
    ...         for layer, a in enumerate(acc)]
    >>> noise_floor(rows)  # each replicate follows the other's pick, 12.5 points below its best
    {('m', 'd'): 12.5}
    """
    out = {}
    for task, group in group_rows(rows, ("model", "dataset")).items():
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
    for (model, dataset, _), group in group_rows(rows, ("model", "dataset", "replicate")).items():
        acc = np.array([r[PROBE] for r in group])
        out["layer_regret"][model, dataset].append(100 * float(acc.max() - acc.mean()))
    for (dataset, _), group in group_rows(rows, ("dataset", "replicate")).items():
        acc = np.array([r[PROBE] for r in group])
        best = np.array([max(r[PROBE] for r in g) for g in group_rows(group, ("model",)).values()])
        out["pair_regret"][dataset].append(100 * float(acc.max() - acc.mean()))
        out["model_regret"][dataset].append(100 * float(best.max() - best.mean()))
    return {k: {t: float(np.mean(v)) for t, v in d.items()} for k, d in out.items()}


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
    >>> from sklearn_ntps.evidence.reread import model_choice_default
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
        regret = {c: nanmean(list(table[c].values())) for c in scores}
        leader = min(scores, key=lambda c: (np.inf if np.isnan(regret[c]) else regret[c],
                                            cheapness.index(c)))
        diffs = paired_differences(per_rep, scores, leader, axis, n_boot=n_boot)
        out["regret"][axis], out["leaders"][axis], out["differences"][axis] = (
            regret, leader, diffs)
        out["behind"][axis] = [c for c in scores if c in diffs and diffs[c]["low"] > 0]
    tied = [c for c in scores if not any(c in b for b in out["behind"].values())]
    tied = sorted(tied or set(out["leaders"].values()), key=cheapness.index)
    return {"default": tied[0], "separated": len(tied) == 1, "tied": tied, **out}
