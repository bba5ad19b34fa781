"""The evidence: correlations and regrets, intervals over tasks, the rules.

Everything here reads one long table, a list of rows with the keys
``model``, ``dataset``, ``layer``, ``replicate``, ``probe_accuracy`` and one
column per score. A replicate is one random partition of a data set's texts
into disjoint training and test blocks
(:func:`sklearn_ntps.partitions.block_partitions`); every score and probe is
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
    prescreen's (:mod:`sklearn_ntps.prescreen`) alike.

    Examples
    --------
    >>> from sklearn_ntps.study import spearman
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
    regrets and :class:`~sklearn_ntps.selection.LayerSelector` both follow.

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
    :class:`~sklearn_ntps.selection.LayerSelector` gives over its blocks.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``low``, ``high`` and ``n`` (tasks used); the
        bounds are NaN with fewer than two tasks.

    Examples
    --------
    >>> from sklearn_ntps.study import task_interval
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


def wins(per_rep, candidates, metric="layer_regret") -> dict:
    """How many tasks each candidate has the lowest regret on (a tie counts for each tied)."""
    table = task_table(per_rep, candidates, metric)
    out = dict.fromkeys(candidates, 0)
    for task in set().union(*(t.keys() for t in table.values())):
        values = {c: table[c].get(task, np.nan) for c in candidates}
        finite = [v for v in values.values() if np.isfinite(v)]
        best = min(finite, default=np.nan)
        for c, v in values.items():
            out[c] += bool(np.isfinite(v) and v <= best + 1e-9)
    return out


# ----------------------------------------------------------------- the rules
def rule_b(rows, candidates, *, n_boot=N_BOOT) -> dict:
    """Rule B of docs/validity.md: the candidate with the lowest mean layer regret.

    Returns ``{"pick", "tied", "separated", "not_separated_from", "differences",
    "regret", "wins"}`` (``tied``: every candidate with the pick's regret, the
    pick first); ``separated`` is True only when the 95% task interval of the
    paired regret difference with every other candidate lies above zero.
    The LoRA prescreen's rule is :func:`sklearn_ntps.prescreen.recommend`.

    Examples
    --------
    >>> from sklearn_ntps.study import rule_b
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


def provenance(output, code) -> dict:
    """What produced a study's rows: the git commit of ``code`` (a folder in the repository
    that holds the study's script), whether the code differs from it, and the versions of
    the libraries that compute the numbers.

    The study's own output folder ``output`` is not counted as a change: it is the run's
    product, not its code.
    """
    import platform
    import subprocess
    from pathlib import Path

    import sklearn
    import torch
    import transformers

    def git(*cmd):
        return subprocess.run(["git", *cmd], capture_output=True, text=True,
                              cwd=code).stdout.strip()

    spec = [":(top)"]
    top = git("rev-parse", "--show-toplevel")
    if top and Path(output).resolve().is_relative_to(Path(top).resolve()):
        spec.append(f":(top,exclude){Path(output).resolve().relative_to(Path(top).resolve())}")
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--", *spec)),
            "python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def one_thread_worker():
    """A study's worker process initializer: torch, OpenMP and BLAS on one thread each, so
    that two workers on two cores do not spin against each other."""
    import os

    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
