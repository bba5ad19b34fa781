"""How well does each score pick layers, models and data sets? Correlations, regret, bootstrap CIs.

Everything here reads one long table, a list of rows with the keys
``model``, ``dataset``, ``layer``, ``replicate``, ``probe_accuracy`` and one
column per score. Replicate 0 holds the point estimates; replicates 1 .. B
are bootstrap resamples of the same study (training and test texts), so
every statistic's interval is the point estimate +- 1.96 bootstrap standard
deviations, and differences between scores are paired replicate by replicate.
numpy and scipy only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
from scipy.stats import spearmanr

PROBE = "probe_accuracy"
# Fixed rules a score must beat at picking a layer: they need no data at all.
BASELINES = {
    "last layer": lambda n_layers: n_layers - 1,
    "layer at 2/3 depth": lambda n_layers: int(round(2 * (n_layers - 1) / 3)),
}
_Z95 = 1.959964


def _spearman(a, b) -> float:
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


def replicate_metrics(rows, scores, baselines=tuple(BASELINES)) -> dict:
    """Every metric of one replicate's rows, keyed by (metric, score, group).

    Metrics: ``layer_spearman`` and ``layer_regret`` per (model, dataset),
    ``layer_pick`` (the picked layer), ``dataset_spearman`` per (model, layer),
    ``model_spearman`` and ``model_regret`` per dataset, over the (model,
    layer) pairs of every model; and their means over groups under the group
    ``"mean"``.
    """
    out = {}
    for (model, dataset), group in _groups(rows, ("model", "dataset")).items():
        acc = np.array([r[PROBE] for r in group])
        for score in (*scores, *baselines):
            picked = _pick(group, score)
            out["layer_regret", score, (model, dataset)] = float(acc.max() - acc[picked])
            out["layer_pick", score, (model, dataset)] = group[picked]["layer"]
            if score in scores:
                out["layer_spearman", score, (model, dataset)] = _spearman(
                    [r[score] for r in group], acc)
    for (model, layer), group in _groups(rows, ("model", "layer")).items():
        for score in scores:
            out["dataset_spearman", score, (model, layer)] = _spearman(
                [r[score] for r in group], [r[PROBE] for r in group])
    for (dataset,), group in _groups(rows, ("dataset",)).items():
        acc = np.array([r[PROBE] for r in group])
        for score in scores:
            out["model_spearman", score, dataset] = _spearman([r[score] for r in group], acc)
            out["model_regret", score, dataset] = float(acc.max() - acc[_pick(group, score)])
    means = defaultdict(list)
    for (metric, score, _), value in out.items():
        if metric != "layer_pick":
            means[metric, score].append(value)
    for (metric, score), values in means.items():
        out[metric, score, "mean"] = float(np.nanmean(values)) if np.isfinite(values).any() \
            else float("nan")
    return out


def summarize(rows, scores, baselines=tuple(BASELINES)) -> dict:
    """Point estimate, bootstrap standard error and 95% interval of every metric.

    Returns ``{(metric, score, group): {"estimate", "se", "low", "high"}}``.
    With no bootstrap replicates, ``se`` and the bounds are NaN.
    """
    per_rep = {rep: replicate_metrics(group, scores, baselines)
               for (rep,), group in _groups(rows, ("replicate",)).items()}
    point = per_rep.pop(0)
    out = {}
    for key, estimate in point.items():
        boot = np.array([m.get(key, np.nan) for m in per_rep.values()], dtype=float)
        out[key] = _interval(estimate, boot, _BOUNDS.get(key[0], (-np.inf, np.inf)))
    return out


# A normal interval can cross what a metric can reach; it is clipped there.
_BOUNDS = {"layer_spearman": (-1, 1), "dataset_spearman": (-1, 1), "model_spearman": (-1, 1),
           "layer_regret": (0, 1), "model_regret": (0, 1)}


def _interval(estimate, boot, bounds=(-np.inf, np.inf)):
    boot = boot[np.isfinite(boot)]
    se = float(np.std(boot, ddof=1)) if boot.size > 1 else float("nan")
    return {"estimate": estimate, "se": se,
            "low": max(estimate - _Z95 * se, bounds[0]),
            "high": min(estimate + _Z95 * se, bounds[1])}


def paired_regret_differences(rows, candidates, reference, metric="layer_regret") -> dict:
    """Mean-regret difference ``candidate - reference`` with a paired bootstrap interval.

    Positive means the candidate loses more accuracy than ``reference``.
    """
    scores = [c for c in candidates if c not in BASELINES]
    baselines = [c for c in candidates if c in BASELINES]
    per_rep = {rep: replicate_metrics(group, scores, baselines)
               for (rep,), group in _groups(rows, ("replicate",)).items()}
    out = {}
    for cand in candidates:
        if cand == reference:
            continue
        diffs = {rep: m[metric, cand, "mean"] - m[metric, reference, "mean"]
                 for rep, m in per_rep.items()}
        estimate = diffs.pop(0)
        out[cand] = _interval(estimate, np.array(list(diffs.values())))
    return out


def recommend(rows, candidates) -> dict:
    """Rule B of docs/validity.md: the candidate with the lowest mean layer regret.

    Returns ``{"pick", "tied", "separated", "not_separated_from", "differences"}``
    (``tied``: every candidate with the pick's regret, the pick first);
    ``separated`` is True only when the 95% interval of the paired regret
    difference with every other candidate lies above zero.
    """
    scores = [c for c in candidates if c not in BASELINES]
    baselines = [c for c in candidates if c in BASELINES]
    point = replicate_metrics([r for r in rows if r["replicate"] == 0], scores, baselines)
    regret = {c: point["layer_regret", c, "mean"] for c in candidates}
    pick = min(candidates, key=regret.get)
    diffs = paired_regret_differences(rows, candidates, pick)
    close = [c for c, d in diffs.items() if not d["low"] > 0]
    tied = [c for c in candidates if regret[c] == regret[pick]]
    return {"pick": pick, "tied": tied, "separated": not close, "not_separated_from": close,
            "differences": diffs}


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
