"""The main job: every score and a held-out probe, for every layer of some models and data sets.

For each (model, data set), the texts are dealt into disjoint blocks with the
class proportions of the whole, and the model runs once over each block,
giving every layer's statistics. A replicate is one random partition of the
blocks into training and test blocks (no text on both sides, none twice).
Per layer and replicate, the states are rescaled feature by feature as the
probe's scaler does (the rule of docs/validity.md that puts every score on the
probe's footing), every scorer is fitted on the training blocks, and the probe
(its C chosen by cross-validation on the training texts) is trained there and
scored on the test blocks; a data set that comes with its own training and test
texts is one fixed partition instead. :mod:`sklearn_ntps.evidence.study` turns the table into
correlations, regrets and intervals over tasks. Files are written atomically,
so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import io
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from joblib import delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .._utils import csv_text, json_text, results_as_read, worker_pool, write_atomic
from ..choice.probe import default_probe
from ..choice.protocol import (
    BASELINES,
    NOT_SEPARATED,
    RECOMMENDED,
    block_layers,
    block_partitions,
    distance_from_chance,
    fit_scores,
    footed_partition,
    layer_ranges,
    noise_set,
    score_layer,
)
from ..scores.registry import default_scorers
from ..splits import stratified_blocks
from ..states.embedding import HFEmbeddingTransformer
from ..states.models import resolve_model
from .study import PROBE, PROBE_TRAIN, rule_b, summarize

__all__ = ["Report", "plot_report", "report_figure", "run_report", "save_report"]


@dataclass
class Report:
    """The long table of a study and what :mod:`~sklearn_ntps.evidence.study` makes of it.

    ``rows`` hold one dict per (model, dataset, layer, replicate) with a
    column per scorer, ``probe_accuracy`` (held out), ``probe_train_accuracy``
    and the probe's ``probe_C``; every replicate is a partition of the texts
    into disjoint training and test blocks.
    """

    scores: list
    datasets: dict = field(default_factory=dict)  # name -> sizes
    n_replicates: int = 1
    rows: list = field(default_factory=list)
    extra: list = field(default_factory=list)  # further columns, not candidates

    @property
    def models(self) -> list:
        """The models of the rows, in the order they first appear."""
        return list(dict.fromkeys(r["model"] for r in self.rows))

    @property
    def candidates(self) -> list:
        """What a rule picks among: the scores, then the fixed layer baselines.

        The baselines (``"last layer"``, ``"layer at 2/3 depth"``) are those of
        :data:`sklearn_ntps.choice.protocol.BASELINES`.
        """
        return [*self.scores, *BASELINES]

    @property
    def chance_columns(self) -> list:
        """Each score's mean and standard deviation on shuffled labels, where the rows hold them."""
        first = self.rows[0] if self.rows else {}
        return [f"{s}_{c}" for s in self.scores for c in ("chance", "chance_std")
                if f"{s}_{c}" in first]

    @property
    def columns(self) -> list:
        """The columns of ``report.csv``, in order.

        The row's keys (model, data set, layer, replicate), the scores, their
        chance columns, the extra columns, the probe's held-out and training
        accuracies and its C, and ``within_noise`` where the rows have it.
        """
        noise = ["within_noise"] if self.rows and "within_noise" in self.rows[0] else []
        return ["model", "dataset", "layer", "replicate", *self.scores, *self.chance_columns,
                *self.extra, PROBE, PROBE_TRAIN, "probe_C", *noise]

    @cached_property
    def summary(self) -> dict:
        """Every metric per group and its mean over tasks, as ``{(metric, score, group): cell}``.

        :func:`~sklearn_ntps.evidence.study.summarize` of the rows, computed once.
        """
        return summarize(self.rows, self.scores)

    @cached_property
    def recommendation(self) -> dict:
        """Rule B of docs/validity.md on the rows: the candidate with the lowest mean layer regret.

        :func:`~sklearn_ntps.evidence.study.rule_b` over :attr:`candidates`, computed once.
        """
        return rule_b(self.rows, self.candidates)

    def to_text(self) -> str:
        """The tables the command line prints: correlations and regrets (in accuracy points)."""
        s, width = self.summary, max(len(c) for c in self.candidates)
        groups = sorted({g for (m, _, g) in s if m == "layer_regret" and g != "mean"})
        lines = [f"{len(self.models)} model(s) x {len(self.datasets)} data set(s) = "
                 f"{len(groups)} task(s); {self.n_replicates} replicate(s), each a random "
                 "partition of the texts into disjoint training and test blocks."]
        if len(groups) > 1:
            lines.append("Means over tasks carry 95% intervals from a bootstrap over the tasks "
                         "(Student's t); brackets with 'reps' give the range over replicates.")
        for metric, title, names, points in (
                ("layer_spearman", "Spearman with probe accuracy across layers", self.scores,
                 False),
                ("layer_regret", "Regret of the layer each score picks, in accuracy points "
                 "(best probe accuracy minus the accuracy there)", self.candidates, True)):
            lines += ["", title]
            for g in [*groups, "mean"] if len(groups) > 1 else groups:
                label = f"mean over {len(groups)} tasks" if g == "mean" else \
                    f"{g[0][-20:]} / {g[1]}"
                lines.append(f"  {label}:")
                lines += [f"    {n:<{width}} {_fmt(s.get((metric, n, g)), points)}"
                          for n in names]
        lines += self._chance_text(groups)
        rec = self.recommendation
        verdict = "its interval separates from every other" if rec["separated"] else \
            "no separation from: " + ", ".join(rec["not_separated_from"])
        lines += ["", f"On these data, lowest mean layer regret: {', '.join(rec['tied'])} "
                      f"({verdict})."]
        if RECOMMENDED in self.scores:
            lines += ["", f"Recommended layer, by {RECOMMENDED} (lowest mean layer regret in "
                          "docs/validity.md, not separated there from "
                          f"{', '.join(NOT_SEPARATED)}):"]
            for g in groups:
                pick = s["layer_pick", RECOMMENDED, g]
                agree = pick["picks"].count(pick["estimate"])
                regret = s["layer_regret", RECOMMENDED, g]["estimate"]
                lines.append(f"  {g[0][-20:]} / {g[1]}: layer {pick['estimate']} (picked in "
                             f"{agree} of {len(pick['picks'])} replicates; {regret:.1f} accuracy "
                             "points below the best layer here, on average, part of which is "
                             "the probe's own noise)")
                lines.append(f"    {self._noise_text(g)}")
        return "\n".join(lines)

    def _chance_text(self, groups) -> list:
        """Every score beside its chance level: how many layers leave it, and by how much."""
        if not self.chance_columns:
            return []
        lines = ["", "Scores against their chance level (mean over shuffled labels): layers more "
                     "than 2 standard deviations above it, and the median distance in sd"]
        above_any = False
        for g in groups:
            rows = [r for r in self.rows if (r["model"], r["dataset"]) == g]
            lines.append(f"  {g[0][-20:]} / {g[1]}:")
            for name in self.scores:
                z = distance_from_chance(np.array([r[name] for r in rows], dtype=float),
                              np.array([r.get(f"{name}_chance", np.nan) for r in rows]),
                              np.array([r.get(f"{name}_chance_std", np.nan) for r in rows]))
                if not np.isfinite(z).any():
                    lines.append(f"    {name:<18} reads no labels: no chance level")
                    continue
                above = int(np.sum(z > 2))
                above_any |= above > 0
                lines.append(f"    {name:<18} {above:>3} of {len(rows)} layer-replicates above "
                             f"chance; median {np.nanmedian(z):+.1f} sd")
        if not above_any:
            lines.append("  Every score is within 2 sd of its chance level at every layer: on "
                         "these texts no score tells the labels from random ones. Label more "
                         "texts.")
        return lines

    def _noise_text(self, group) -> str:
        """The layers the recommended pick cannot be told apart from, per replicate."""
        rows = [r for r in self.rows if (r["model"], r["dataset"]) == group]
        if not rows or "within_noise" not in rows[0]:
            return "(no block intervals: nothing says which layers are told apart)"
        parts = []
        for rep in sorted({r["replicate"] for r in rows}):
            layers = [r["layer"] for r in rows if r["replicate"] == rep and r["within_noise"]]
            if len(layers) == sum(r["replicate"] == rep for r in rows):
                parts.append(f"replicate {rep}: every layer")
            else:
                parts.append(f"replicate {rep}: {layer_ranges(layers)}")
        return ("cannot be told apart from the pick by its score on these texts: "
                + "; ".join(parts))

    def summary_rows(self) -> list:
        """The cells of :attr:`summary` as flat rows, one per (metric, score, group).

        Returns
        -------
        list of dict
            Each row holds ``metric``, ``score`` and ``group`` (a tuple group
            joined with ``" / "``) and the cell's values, without its ``picks``.
        """
        return [{"metric": m, "score": n, "group": g if isinstance(g, str) else " / ".join(
            map(str, g)), **{k: v for k, v in cell.items() if k != "picks"}}
            for (m, n, g), cell in self.summary.items()]

    def to_json(self) -> str:
        """The report as strict JSON: its rows, summary and recommendation.

        Returns
        -------
        str
            The scores, data sets, number of replicates, rows, :meth:`summary_rows`
            and :attr:`recommendation`, indented; NaN and infinities are null.
        """
        data = {"scores": self.scores, "datasets": self.datasets,
                "n_replicates": self.n_replicates, "rows": self.rows,
                "summary": self.summary_rows(), "recommendation": self.recommendation}
        return json_text(data)

    def to_csv(self) -> str:
        """The per-layer table, one row per replicate."""
        return csv_text(self.columns, self.rows)

    def summary_csv(self) -> str:
        """The summary table, ``summary.csv``.

        Returns
        -------
        str
            CSV text of :meth:`summary_rows` under the columns ``metric``,
            ``score``, ``group``, ``estimate``, ``se``, ``low``, ``high``, ``n``,
            ``rep_low`` and ``rep_high``.
        """
        columns = ["metric", "score", "group", "estimate", "se", "low", "high", "n", "rep_low",
                   "rep_high"]
        return csv_text(columns, self.summary_rows())




def _fmt(cell, points=False):
    if cell is None or not np.isfinite(cell["estimate"]):
        return "    n/a"
    f = "{:6.1f}" if points else "{:+7.3f}"
    text = f.format(cell["estimate"])
    if np.isfinite(cell.get("se", np.nan)):
        text += f"  [{f.format(cell['low']).strip()}, {f.format(cell['high']).strip()}]"
    if cell.get("rep_high", np.nan) != cell.get("rep_low", np.nan):
        text += f"  (reps {f.format(cell['rep_low']).strip()} .. " \
                f"{f.format(cell['rep_high']).strip()})"
    return text


def run_report(models, datasets, *, scorers=None, probe=None, n_replicates=1, n_blocks=10,
               n_test_blocks=3, random_state=0, embedding_params=None, extra_columns=None,
               n_jobs=-1, progress=True) -> Report:
    """Every score and the held-out probe, for every layer of every model on every data set.

    Parameters
    ----------
    models : sequence of str
        Anything :class:`~sklearn_ntps.HFEmbeddingTransformer` takes.
    datasets : dict
        ``name -> (texts, labels)``: the texts the partitions are drawn from;
        or ``name -> (X_train, y_train, X_test, y_test)``: one fixed partition
        (every score and the probe are fitted on the first texts, the probe is
        scored on the others), which needs ``n_replicates=1``.
    scorers : dict, default=None
        ``column -> estimator`` with the NTPSScorer API (``fit(X, y).score_``);
        None uses :func:`default_scorers`.
    probe : classifier, default=None
        None uses :func:`default_probe`.
    n_replicates : int, default=1
        Random partitions of the blocks into training and test blocks; each
        refits every score and probe.
    n_blocks, n_test_blocks : int, default=10, 3
        The texts are dealt into ``n_blocks`` stratified blocks, of which each
        replicate tests on ``n_test_blocks``.
    random_state : int, default=0
        With each data set's name, seeds its blocks and partitions, so a
        study split over several runs draws the same.
    embedding_params : dict, default=None
        Further :class:`~sklearn_ntps.HFEmbeddingTransformer` parameters.
    extra_columns : callable, default=None
        ``extra_columns(moments, y) -> dict`` of further columns per row,
        computed on the same rescaled training moments.
    n_jobs : int or None, default=-1
        Processes the probes run in (-1: one per core), one layer's probe per
        process with its folds one after another, while this process goes on
        to the next layers' scores. 1 or None fits each probe here instead,
        its folds in the processes of its own ``n_jobs``. The rows are the same
        to the bit either way (the probe's fits and the scores each run on one
        BLAS thread).
    progress : bool, default=True

    Returns
    -------
    Report
    """
    # Every check that can fail runs before the first forward pass.
    block_partitions(n_blocks, n_test_blocks, n_replicates)
    for model in models:
        resolve_model(model)
    scorers = default_scorers() if scorers is None else dict(scorers)
    probe = default_probe() if probe is None else probe
    report = Report(list(scorers), n_replicates=n_replicates)
    with worker_pool(n_jobs) as pool:
        if pool is not None:
            # A layer's probe is one task: its folds run one after another in that process.
            probe = clone(probe).set_params(**{k: None for k in probe.get_params()
                                               if k.split("__")[-1] == "n_jobs"})
        for name, data in datasets.items():
            texts, y, blocks, partitions = _partitioned(name, data, n_blocks, n_test_blocks,
                                                        n_replicates, random_state)
            report.datasets[name] = {
                "n_texts": len(texts), "n_classes": int(np.unique(y).size),
                "n_train": [int(sum(blocks[b].size for b in tr)) for tr, _ in partitions]}
            for model in models:
                group = []
                tasks = _layer_tasks(group, model, name, texts, y, blocks, partitions, scorers,
                                     probe, extra_columns, embedding_params, progress)
                fitted = results_as_read(tasks, pool)
                # In processes the first result comes once every layer is scored; the bar then
                # counts the probes still running, which would otherwise be a silent wait. With
                # n_jobs=1 each probe runs as its layer's task is read, so group grows as the loop
                # goes: hence its length read at every step.
                with tqdm(desc=f"{name}: probes of {model}", unit="layer", delay=2,
                          disable=not progress) as bar:
                    for i, columns in enumerate(fitted):
                        bar.total = len(group)
                        group[i].update(columns)
                        bar.update()
                _mark_noise(group, scorers)
                report.rows.extend(group)
                if extra_columns is not None and not report.extra:
                    report.extra = [c for c in report.rows[-1] if c not in report.columns]
    return report


def _layer_tasks(group, model, name, texts, y, blocks, partitions, scorers, probe,
                 extra_columns, embedding_params, progress):
    """Per layer and replicate: a row of scores appended to ``group``, and its probe's task.

    The scores run on one BLAS thread: beside the probes' processes more would only contend,
    and their bits do not depend on ``n_jobs``.
    """
    params = dict(model_name_or_path=model, progress=progress, **(embedding_params or {}))
    emb = HFEmbeddingTransformer(output="tokens", **params).fit()
    y_blocks = [y[b] for b in blocks]
    for layer, parts in block_layers(emb, texts, blocks, progress=progress,
                                     desc=f"{name}: layers of {model}"):
        for rep, (train, test) in enumerate(partitions):
            row = {"model": model, "dataset": name, "layer": layer, "replicate": rep}
            with threadpool_limits(1, user_api="blas"):
                scores, probe_data = _evaluate(parts, y_blocks, train, test, scorers,
                                               extra_columns)
            group.append({**row, **scores})
            yield delayed(_probe_columns)(probe, *probe_data)


def _partitioned(name, data, n_blocks, n_test_blocks, n_replicates, random_state):
    """A data set's texts, labels, blocks and partitions: drawn, or the split it came with."""
    if len(data) == 4:  # a fixed split: two blocks, one partition
        if n_replicates != 1:
            raise ValueError(f"{name!r} comes as a fixed training and test split, which is one "
                             f"partition: n_replicates must be 1, got {n_replicates}.")
        X_train, y_train, X_test, y_test = data
        texts, n_train = [*X_train, *X_test], len(X_train)
        y = np.concatenate([np.asarray(y_train), np.asarray(y_test)])
        blocks = [np.arange(n_train), np.arange(n_train, len(texts))]
        return texts, y, blocks, [(np.array([0]), np.array([1]))]
    texts, y = data
    texts, y = list(texts), np.asarray(y)
    rng = np.random.default_rng([random_state, zlib.crc32(name.encode())])
    blocks = stratified_blocks(y, n_blocks, rng)
    return texts, y, blocks, block_partitions(n_blocks, n_test_blocks, n_replicates, rng)


def _evaluate(parts, y_blocks, train, test, scorers, extra_columns):
    """One replicate of one layer: every score on the training blocks, and the probe's data.

    Returns the row's scores and ``(X_train, y_train, X_test, y_test)`` for :func:`_probe_columns`.
    """
    moments, X_test = footed_partition(parts, train, test)
    y_train = np.concatenate([y_blocks[b] for b in train])
    y_test = np.concatenate([y_blocks[b] for b in test])
    blocked = RECOMMENDED in scorers and len(train) > 1
    row = fit_scores({k: v for k, v in scorers.items() if not (blocked and k == RECOMMENDED)},
                     moments, y_train, chance=True)
    if blocked:
        # The recommended score on all the training texts and on each training block: the
        # intervals of _mark_noise. The same fit as fit_scores', shuffles included.
        whole, row["_blocks"], row["_shuffles"] = score_layer(
            scorers[RECOMMENDED], [parts[b] for b in train], [y_blocks[b] for b in train])
        shuffled = row["_shuffles"]
        row[RECOMMENDED] = whole
        row[f"{RECOMMENDED}_chance"] = float(shuffled.mean()) if shuffled.size else np.nan
        row[f"{RECOMMENDED}_chance_std"] = (float(shuffled.std(ddof=1)) if shuffled.size > 1
                                            else np.nan)
        row = {name: row[name] for name in [*scorers, *[k for k in row if k not in scorers]]}
    if extra_columns is not None:
        row.update(extra_columns(moments, y_train))
    return row, (moments.pooled, y_train, X_test, y_test)


def _probe_columns(probe, X_train, y_train, X_test, y_test) -> dict:
    """The probe trained on the training texts: its held-out and training accuracy, and its C."""
    with warnings.catch_warnings():
        # Unconverged CV folds at the largest C are expected; they are not chosen.
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = clone(probe).fit(X_train, y_train)
    last = fitted[-1] if isinstance(fitted, Pipeline) else fitted
    return {PROBE: float(fitted.score(X_test, y_test)),
            PROBE_TRAIN: float(fitted.score(X_train, y_train)),
            "probe_C": float(np.ravel(getattr(last, "C_", [np.nan]))[0])}


def _mark_noise(rows, scorers):
    """``within_noise``: the layers the recommended score's pick cannot be told apart from.

    Per replicate, by :func:`~sklearn_ntps.choice.selection.noise_set`'s rule on the
    training blocks; the per-block values are dropped from the rows after.
    """
    if not rows or "_blocks" not in rows[0]:
        return
    for rep in sorted({r["replicate"] for r in rows}):
        mine = [r for r in rows if r["replicate"] == rep]
        scores = [r[RECOMMENDED] for r in mine]
        pick = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        width = min(r["_shuffles"].size for r in mine)
        noise = noise_set(scores, [r["_blocks"] for r in mine],
                          [r["_shuffles"][:width] for r in mine], pick)
        for r, within in zip(mine, noise["within"]):
            r["within_noise"] = bool(within)
    for r in rows:
        del r["_blocks"], r["_shuffles"]


def plot_report(report: Report) -> bytes:
    """The PNG of :func:`report_figure`."""
    buffer = io.BytesIO()
    report_figure(report).savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def report_figure(report: Report):
    """Per-task panels (each score rescaled to [0, 1] beside probe accuracy) and the summaries.

    Every panel holds a plot: tasks fill rows of two (a last odd one spans
    both), and the two summaries share the bottom row. Uses matplotlib's
    object API, so a notebook's backend and figures are left alone.
    """
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys((r["model"], r["dataset"]) for r in report.rows))
    mosaic = [[f"g{i}", f"g{i + 1}" if i + 1 < len(groups) else f"g{i}"]
              for i in range(0, len(groups), 2)] + [["regret", "spearman"]]
    fig = Figure(figsize=(12, 4.4 * len(mosaic)), layout="constrained")
    axes = fig.subplot_mosaic(mosaic)
    for i, group in enumerate(groups):
        _plot_layers(axes[f"g{i}"], report, group)
    _plot_bars(axes["regret"], report.summary, report.candidates, "layer_regret",
               "regret of the picked layer, accuracy points")
    _plot_bars(axes["spearman"], report.summary, report.scores, "layer_spearman",
               "Spearman with probe accuracy across layers")
    fig.suptitle(f"Which score tracks a held-out linear probe? {len(report.models)} model(s), "
                 f"{len(report.datasets)} data set(s), {report.n_replicates} replicate(s)",
                 fontsize="medium")
    return fig


def _plot_layers(ax, report, group):
    rows = [r for r in report.rows if (r["model"], r["dataset"]) == group]
    layers = sorted({r["layer"] for r in rows})

    def mean_of(column):
        return np.array([np.mean([r[column] for r in rows if r["layer"] == layer])
                         for layer in layers], dtype=float)

    # The score the user reads and NTPS stand out; the others recede into grey.
    colors = {RECOMMENDED: "tab:orange", "ntps": "tab:blue"}
    for score in report.scores:
        v = mean_of(score)
        rho = report.summary.get(("layer_spearman", score, group), {}).get("estimate", np.nan)
        label = f"{score} (ρ={rho:+.2f})" if np.isfinite(rho) else score
        low, span = v.min(), np.ptp(v) or 1.0
        main = score in colors
        ax.plot(layers, (v - low) / span, label=label, color=colors.get(score),
                lw=2.6 if main else 0.9, alpha=0.95 if main else 0.35, zorder=3 if main else 2)
        if main and f"{score}_chance" in rows[0]:
            # Its chance level on the same scale: a line far below it is signal.
            ax.plot(layers, (mean_of(f"{score}_chance") - low) / span, ls=":", lw=1.4,
                    color=colors[score], label=f"{score} on shuffled labels")
    if "within_noise" in rows[0]:
        share = np.array([np.mean([r["within_noise"] for r in rows if r["layer"] == layer])
                          for layer in layers])
        for layer, s_ in zip(layers, share):
            if s_ > 0:
                ax.axvspan(layer - 0.5, layer + 0.5, color="tab:orange", alpha=0.12 * s_, lw=0)
    ax2 = ax.twinx()
    ax2.plot(layers, 100 * mean_of(PROBE), "k^--", lw=1.8, ms=3, label="probe accuracy")
    ax2.set_ylabel("held-out probe accuracy, % (black)")
    ax.set(title=f"{group[0][-28:]} on {group[1]} (mean over replicates; shaded: layers the "
                 f"{RECOMMENDED} pick cannot be told apart from)",
           xlabel="layer (0 = embeddings)", ylabel="score, rescaled to [0, 1]")
    ax.title.set_fontsize("small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4,
              frameon=False)


def _plot_bars(ax, summary, names, metric, title):
    cells = [summary.get((metric, n, "mean"), {}) for n in names]
    est = np.array([c.get("estimate", np.nan) for c in cells], dtype=float)
    low = np.array([c.get("low", np.nan) for c in cells], dtype=float)
    high = np.array([c.get("high", np.nan) for c in cells], dtype=float)
    err = np.array([est - low, high - est])
    has_interval = np.isfinite(err).all(axis=0)
    # Dots and whiskers, not bars: a zero estimate is a dot at 0, not a bar that looks missing.
    for i, name in enumerate(names):
        main = name in (RECOMMENDED, "ntps")
        color = "tab:orange" if name == RECOMMENDED else "tab:blue" if main else "0.55"
        if has_interval[i]:
            ax.errorbar(est[i], i, xerr=err[:, i:i + 1], fmt="none", ecolor=color,
                        capsize=3, lw=2 if main else 1)
        ax.plot(est[i], i, "o", color=color, ms=8 if main else 5)
    if has_interval.any():
        title += " (mean over tasks, 95% interval over tasks)"
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_title(title, fontsize="small")
    ax.grid(alpha=0.3, axis="x")


def check_writable(folder) -> Path:
    """Create ``folder`` and prove a file can be written there, before any model work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"Cannot write the report to {folder}: {exc.strerror or exc}") from None
    return folder


def save_report(report: Report, folder, *, plot=True) -> list:
    """Write ``report.csv``, ``summary.csv``, ``report.json`` and ``report.png``.

    ``report.csv`` has a row per layer and replicate; ``report.png`` is written only with
    ``plot``. Return the paths written. Everything is rendered in memory first, so an error
    or Ctrl-C leaves the folder as it was.
    """
    folder = check_writable(folder)
    files = {"report.csv": report.to_csv(), "summary.csv": report.summary_csv(),
             "report.json": report.to_json()}
    if plot:
        files["report.png"] = plot_report(report)
    paths = []
    for name, data in files.items():
        write_atomic(folder / name, data)
        paths.append(folder / name)
    return paths
