"""The power of LoRA study v3 (docs/lora_v3_plan.md), by simulating its design and analysis.

    python docs/lora_power.py                # the tables of docs/lora_v3_plan.md, section 6
    python docs/lora_power.py --n-sims 200   # quicker and noisier

**Design.** ``T`` tasks nested in sources (:data:`DESIGNS`: 16, 24 or 32 tasks from the ten
sources of the validity study, uneven counts), each run on ``M`` models; one row per
(task, model).

**Model of the rows.** For NTPS (``x``) and for the gain without measurement noise (``g``),
each standardised, a row's value is ``sqrt(f_source) A_s + sqrt(f_task) B_t + sqrt(f_row) E_tm``:
a source effect, a task effect shared by the models, and the row's own part, three independent
standard normal pairs whose ``x`` and ``g`` sides correlate ``r = 2 sin(pi rho / 6)``, so that
inside a model ``Spearman(x, g)`` is ``rho`` in the population at every level (the bivariate
normal's link between Pearson's and Spearman's coefficients). The shares ``f`` are one set for
both variables: the geometric mean of those estimated for NTPS and for the gain from study v2's
24 rows (:func:`v2_shares`; the design effect of a correlation grows with the product of the
two variables' intra-class correlations). The measured gain is
``g + (NOISE_SD / GAIN_SD) e``, ``e`` standard normal: ``rho`` is the correlation with the gain
itself, and the noise of measuring it attenuates what a study sees.

**Analysis**, v3's primary one: the mean over the models of ``Spearman(NTPS, gain)`` inside
each model, its 95% interval from docs/lora_tables.py's ``cluster_bootstrap`` (sources drawn
with replacement, every row of a drawn source taken, the estimate +- ``t(S - 1)`` times the
bootstrap standard error, clipped to [-1, 1]; :func:`clustered_interval` is the same
computation, vectorised, and tests/test_lora_power.py checks that it gives the same numbers).
A study detects the paper's relation when the interval lies below 0 (a two-sided test at
0.05 read in the paper's direction); power is the share of simulated studies that do.

Common random numbers: every ``rho`` of a design reuses the same normal draws and bootstrap
draws, so the power curve is smooth in ``rho``; the smallest ``|rho|`` detected with 80% power
is read from it by linear interpolation on a grid of 0.05.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path

import numpy as np

V2_ROWS = Path(__file__).parent / "lora_v2" / "rows"
RHOS = (-0.2, -0.3, -0.4, -0.5, -0.65, -0.8)
# Where the smallest detectable |rho| is read: the table's rho and every 0.05 from 0.20 to 0.90.
GRID = tuple(sorted({*RHOS, *(-k / 100 for k in range(20, 91, 5))}, reverse=True))
TARGET = 0.8
# Tasks per source (docs/lora_v3_plan.md, section 1: disjoint random class groups; the four
# sources with two to sixteen classes give one task each). 24 is the registered design; every
# group of 16 and 32 also has 1,000 training and 400 test texts to draw from (checked by
# counting texts: 32 needs DBpedia at 5 groups, not 6).
_SINGLE = {"mcid": 1, "rotten_tomatoes": 1, "sms_spam": 1, "trec": 1}
DESIGNS = {
    16: {"banking77": 3, "clinc150": 3, "dbpedia": 2, "twenty_newsgroups": 2,
         "yahoo_answers": 1, "x_topic": 1, **_SINGLE},
    24: {"banking77": 4, "clinc150": 5, "dbpedia": 4, "twenty_newsgroups": 3,
         "yahoo_answers": 2, "x_topic": 2, **_SINGLE},
    32: {"banking77": 6, "clinc150": 8, "dbpedia": 5, "twenty_newsgroups": 4,
         "yahoo_answers": 3, "x_topic": 2, **_SINGLE},
}
# The gain's spread and its measurement noise, in accuracy points (docs/lora_v3_plan.md, 6).
GAIN_SD = 3.9  # v2's total SD of the gain, 4.8, less its row-order noise, 2.8, in quadrature
NOISE_SD = 2.0  # v3's paired gain: 400 test texts (1.6) and LoRA's seed (1.2), in quadrature
N_SIMS, N_BOOT, SEED = 1000, 1000, 0


def sensitivity_rows(common, ntps):
    """(models, shares, gain noise in points) of the sensitivity rows."""
    return [(1, common, 0.0), (1, common, 2.8),
            (1, {"source": 0.0, "task": 0.5, "row": 0.5}, NOISE_SD),
            (1, ntps, NOISE_SD),
            (2, {"source": common["source"], "task": (1 - common["source"]) / 2,
                 "row": (1 - common["source"]) / 2}, NOISE_SD)]


# ----------------------------------------------------------------- study v2's variance shares
def read_v2_rows(folder=V2_ROWS):
    """Study v2's 24 rows, with ``own_gain`` = LoRA minus its own starting probe, in points."""
    rows = []
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    for r in rows:
        r["own_gain"] = 100 * (float(r["lora_accuracy"]) - float(r["lora_step0_accuracy"]))
    return rows


def normal_scores(values):
    """Van der Waerden scores: the normal quantiles of ``(rank - 0.5) / n``."""
    from scipy.stats import norm, rankdata

    v = np.asarray(values, dtype=float)
    return norm.ppf((rankdata(v) - 0.5) / v.size)


def variance_shares(rows, column):
    """Shares of a column's variance from its source, its task and its row (task x model).

    Within each model the column becomes normal scores (the analysis reads ranks). Every task
    must have a row for every model. Moments: the row part from the spread of a task's rows
    around the task's mean; the source and task parts from a one-way analysis of variance of
    the task means by source (unbalanced, ``n0`` per source); negative parts count as 0.
    """
    models = sorted({r["model"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    z = {}
    for m in models:
        sub = [r for r in rows if r["model"] == m]
        z.update({(r["task"], m): s for r, s in zip(sub, normal_scores(
            [float(r[column]) for r in sub]))})
    values = np.array([[z[t, m] for m in models] for t in tasks])  # (T, M)
    source = {r["task"]: r["source"] for r in rows}
    n_models, task_mean = len(models), values.mean(axis=1)
    row = ((values - task_mean[:, None]) ** 2).sum() / (len(tasks) * (n_models - 1)) \
        if n_models > 1 else 0.0
    names = sorted(set(source.values()))
    groups = [task_mean[[i for i, t in enumerate(tasks) if source[t] == s]] for s in names]
    n_tasks, n_sources = len(tasks), len(names)
    msb = sum(len(g) * (g.mean() - task_mean.mean()) ** 2 for g in groups) / (n_sources - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n_tasks - n_sources)
    n0 = (n_tasks - sum(len(g) ** 2 for g in groups) / n_tasks) / (n_sources - 1)
    parts = {"source": max((msb - msw) / n0, 0.0), "task": max(msw - row / n_models, 0.0),
             "row": row}
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}


def v2_shares(rows=None):
    """The shares for NTPS, for the gain against LoRA's own start, and the geometric mean
    of the two (renormalised), which the simulation uses."""
    rows = read_v2_rows() if rows is None else rows
    x, g = variance_shares(rows, "ntps"), variance_shares(rows, "own_gain")
    common = {k: np.sqrt(x[k] * g[k]) for k in x}
    total = sum(common.values())
    return {"ntps": x, "gain": g, "common": {k: v / total for k, v in common.items()}}


# ----------------------------------------------------------------- the analysis, vectorised
def _weighted_ranks(v, weights):
    """Ranks of ``v`` (..., T) in the samples that repeat row ``j`` ``weights[..., b, j]``
    times, ties averaged as scipy's ``rankdata`` does on the repeated sample: (..., B, T)."""
    less = (v[..., None, :] < v[..., :, None]).astype(float)
    equal = (v[..., None, :] == v[..., :, None]).astype(float)
    return weights @ np.swapaxes(less + 0.5 * equal, -1, -2) + 0.5


def _centred_ranks(v, weights):
    """Weighted ranks minus their weighted mean, with their weighted sum of squares."""
    r = _weighted_ranks(v, weights)
    n = weights.sum(axis=-1)
    d = r - (weights * r).sum(axis=-1)[..., None] / n[..., None]
    return d, (weights * d * d).sum(axis=-1), n


def _rank_correlation(cx, cg, weights):
    (dx, vx, n), (dg, vg, _) = cx, cg
    ok = (vx > 1e-9) & (vg > 1e-9) & (n >= 3)
    return np.where(ok, (weights * dx * dg).sum(axis=-1) / np.sqrt(np.where(ok, vx * vg, 1)),
                    np.nan)


def _weighted_spearman(x, g, weights):
    """Spearman of each weighted sample: x, g (..., T), weights (..., B, T) -> (..., B)."""
    return _rank_correlation(_centred_ranks(x, weights), _centred_ranks(g, weights), weights)


def source_weights(draws, source_of_task, n_sources):
    """How often each task's source was drawn: draws (..., B, S) -> weights (..., B, T)."""
    flat = draws.reshape(-1, draws.shape[-1])
    offsets = n_sources * np.arange(flat.shape[0])[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * n_sources)
    counts = counts.reshape(*draws.shape[:-1], n_sources).astype(float)
    return counts[..., source_of_task]


def mean_spearman(x, g, weights):
    """The mean over models of the within-model Spearman: x, g (..., M, T) -> (..., B)."""
    return np.mean([_weighted_spearman(x[..., m, :], g[..., m, :], weights)
                    for m in range(x.shape[-2])], axis=0)


def interval_from_boot(estimate, boot, n_sources, confidence=0.95):
    """Estimate +- t(S - 1) times the bootstrap SE (undefined replicates left out), clipped
    to [-1, 1], as docs/lora_tables.py's ``cluster_bootstrap``: (low, high), each (...)."""
    from scipy.stats import t as student_t

    finite = np.isfinite(boot)
    count = finite.sum(axis=-1)
    mean = np.where(finite, boot, 0).sum(axis=-1) / np.maximum(count, 1)
    var = np.where(finite, (boot - mean[..., None]) ** 2, 0).sum(axis=-1) / np.maximum(
        count - 1, 1)
    se = np.where(count >= 2, np.sqrt(var), np.nan)
    q = student_t.ppf(0.5 + confidence / 2, n_sources - 1)
    return np.maximum(estimate - q * se, -1.0), np.minimum(estimate + q * se, 1.0)


def clustered_interval(x, g, source, *, n_boot=2000, seed=0):
    """v3's primary statistic for one study: x, g (M, T) by model and task, ``source`` (T,)
    the tasks' sources. Returns ``estimate``, ``low``, ``high``: the numbers of
    ``cluster_bootstrap(rows, mean over models of spearman, n_boot, seed, bounds=(-1, 1))``."""
    x, g = np.asarray(x, dtype=float), np.asarray(g, dtype=float)
    names, codes = np.unique(np.asarray(source), return_inverse=True)
    estimate = mean_spearman(x, g, np.ones((1, x.shape[-1])))[0]
    draws = np.random.default_rng(seed).integers(0, len(names), (n_boot, len(names)))
    boot = mean_spearman(x, g, source_weights(draws, codes, len(names)))
    low, high = interval_from_boot(estimate, boot, len(names))
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


# ----------------------------------------------------------------- the simulation
def design_sources(n_tasks):
    """The source index of every task of a design, sources in :data:`DESIGNS`' order."""
    counts = list(DESIGNS[n_tasks].values())
    return np.repeat(np.arange(len(counts)), counts), len(counts)


def simulate_rows(rng, source_of_task, n_sources, n_models, n_sims):
    """The normal draws of ``n_sims`` studies, shared by every ``rho``."""
    n_tasks = source_of_task.size
    return {"A": rng.standard_normal((n_sims, 2, n_sources))[..., source_of_task][:, :, None],
            "B": rng.standard_normal((n_sims, 2, 1, n_tasks)),
            "E": rng.standard_normal((n_sims, 2, n_models, n_tasks)),
            "noise": rng.standard_normal((n_sims, n_models, n_tasks))}


def rows_at(draws, rho, shares, noise_ratio):
    """NTPS and measured gain, (n_sims, M, T) each, at population Spearman ``rho``."""
    r = 2 * np.sin(np.pi * rho / 6)
    s = np.sqrt(1 - r * r)
    x = g = 0
    for part, key in (("source", "A"), ("task", "B"), ("row", "E")):
        w = np.sqrt(shares[part])
        x = x + w * draws[key][:, 0]
        g = g + w * (r * draws[key][:, 0] + s * draws[key][:, 1])
    x = np.broadcast_to(x, draws["noise"].shape)
    return x, g + noise_ratio * draws["noise"]


def power_curve(n_tasks, n_models, shares, noise_ratio, *, rhos=RHOS, n_sims=N_SIMS,
                n_boot=N_BOOT, seed=SEED, chunk=50):
    """For each ``rho`` in ``(0, *rhos)``: the share of simulated studies whose interval lies
    below 0 (``below``) and above 0 (``above``), and the median half-width of the interval."""
    source_of_task, n_sources = design_sources(n_tasks)
    rng = np.random.default_rng([seed, n_tasks, n_models])
    draws = simulate_rows(rng, source_of_task, n_sources, n_models, n_sims)
    boot_draws = rng.integers(0, n_sources, (n_sims, n_boot, n_sources))
    rhos = (0.0, *rhos)
    rows = {rho: rows_at(draws, rho, shares, noise_ratio) for rho in rhos}
    x = rows[0.0][0]  # NTPS does not depend on rho: its ranks are computed once
    counts = {rho: np.zeros(2, dtype=int) for rho in rhos}
    widths = {rho: [] for rho in rhos}
    ones = np.ones((1, 1, n_tasks))
    for i in range(0, n_sims, chunk):
        sl = slice(i, i + chunk)
        weights = source_weights(boot_draws[sl], source_of_task, n_sources)
        cx = [(_centred_ranks(x[sl, m], ones), _centred_ranks(x[sl, m], weights))
              for m in range(n_models)]
        for rho in rhos:
            g = rows[rho][1][sl]
            estimate = np.mean([_rank_correlation(cx[m][0], _centred_ranks(g[:, m], ones),
                                                  ones)[:, 0] for m in range(n_models)], axis=0)
            boot = np.mean([_rank_correlation(cx[m][1], _centred_ranks(g[:, m], weights),
                                              weights) for m in range(n_models)], axis=0)
            low, high = interval_from_boot(estimate, boot, n_sources)
            counts[rho] += [np.sum(high < 0), np.sum(low > 0)]
            widths[rho].append((high - low) / 2)
    return {rho: {"below": c[0] / n_sims, "above": c[1] / n_sims,
                  "half_width": float(np.nanmedian(np.concatenate(widths[rho])))}
            for rho, c in counts.items()}


def smallest_detectable(curve, target=TARGET):
    """The smallest ``|rho|`` whose power (interval below 0) reaches ``target``, by linear
    interpolation between the simulated ``rho``; None when even the largest falls short."""
    pts = sorted((abs(r), c["below"]) for r, c in curve.items())
    if pts[0][1] >= target:
        return pts[0][0]
    for (r0, p0), (r1, p1) in itertools.pairwise(pts):
        if p0 < target <= p1:
            return r0 + (target - p0) * (r1 - r0) / (p1 - p0)
    return None


def _cell(p, n):
    return f"{p:.2f} ± {np.sqrt(p * (1 - p) / n):.2f}"


def _detectable(curve):
    d = smallest_detectable(curve)
    return f"> {max(abs(r) for r in curve):.2f}" if d is None else f"{d:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sims", type=int, default=N_SIMS)
    parser.add_argument("--n-boot", type=int, default=N_BOOT)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    est = v2_shares()
    shares, ratio = est["common"], NOISE_SD / GAIN_SD
    print("Variance shares (source, task, row) from study v2's 24 rows, normal scores within "
          "model: " + "; ".join(f"{k} " + ", ".join(f"{v[p]:.2f}" for p in ("source", "task",
                                                                            "row"))
                                for k, v in est.items()) + ".\n")
    print(f"{args.n_sims} simulated studies a cell, {args.n_boot} bootstrap replicates each; "
          f"gain noise {NOISE_SD} points against a spread of {GAIN_SD} (ratio {ratio:.2f}). "
          "Power = share of studies whose 95% clustered interval lies below 0, ± its Monte "
          "Carlo SE; at rho = 0, the shares below and above 0 (each should be near 0.025) "
          "and the interval's median half-width.\n")
    head = ["tasks (sources)", "models", "rows", "at rho = 0: below / above 0, half-width",
            *(f"rho = {r:+.2f}" for r in RHOS), "smallest \\|rho\\| at 80%"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n_models in (1, 2):
        for n_tasks in (16, 24, 32):
            c = power_curve(n_tasks, n_models, shares, ratio, rhos=GRID, n_sims=args.n_sims,
                            n_boot=args.n_boot)
            zero = c.pop(0.0)
            print(f"| {n_tasks} ({len(DESIGNS[n_tasks])}) | {n_models} | {n_tasks * n_models} | "
                  f"{zero['below']:.3f} / {zero['above']:.3f}, {zero['half_width']:.2f} | "
                  + " | ".join(_cell(c[r]["below"], args.n_sims) for r in RHOS)
                  + f" | {_detectable(c)} |", flush=True)
    n = max(args.n_sims // 2, 50)
    print(f"\nSensitivity, 24 tasks from 10 sources ({n} simulated studies a row):\n")
    head = ["models", "source / task / row shares", "gain noise (points)",
            "at rho = 0: below / above 0", "rho = -0.40", "rho = -0.65",
            "smallest \\|rho\\| at 80%"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n_models, sh, noise in sensitivity_rows(shares, est["ntps"]):
        c = power_curve(24, n_models, sh, noise / GAIN_SD, rhos=GRID, n_sims=n,
                        n_boot=args.n_boot)
        zero = c.pop(0.0)
        print(f"| {n_models} | {sh['source']:.2f} / {sh['task']:.2f} / {sh['row']:.2f} | {noise} | "
              f"{zero['below']:.3f} / {zero['above']:.3f} | {_cell(c[-0.4]['below'], n)} | "
              f"{_cell(c[-0.65]['below'], n)} | {_detectable(c)} |", flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s in all.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
