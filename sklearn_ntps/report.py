"""The main job: every score and a held-out linear probe, for every layer of some models and data sets.

For each (model, data set), one forward pass over the training texts gives
every layer's statistics (in blocks, so the bootstrap can resample them) and
one over the test texts the pooled features the probe is scored on. Per
layer, each scorer is fitted on the training texts and the probe is trained
there and scored on the test texts; each bootstrap replicate redoes that on
resampled training blocks and test texts. :mod:`sklearn_ntps.study` turns the
table into correlations, regrets and intervals. Files are written atomically,
so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from .embedding import HFEmbeddingTransformer
from .estimators import NTPSScorer
from .moments import resample_blocks
from .peer_estimators import HScoreScorer, LogMEScorer, RankMeScorer, TransRateScorer
from .study import BASELINES, PROBE, recommend, summarize


# The score the report recommends, chosen by rule B of docs/validity.md: the
# lowest mean regret of the layer it picks, 1.1 accuracy points over 10 (model,
# data set) pairs; its interval did not separate from H-score's (1.9 points).
RECOMMENDED = "logme"


def default_scorers() -> dict:
    """The report's columns: NTPS at the library defaults, its other variant, the paper's exact
    setting, and the peers."""
    ntps = NTPSScorer()
    other = "paper" if ntps.variant == "whitened" else "whitened"
    return {
        "ntps": ntps,
        f"ntps_{other}": NTPSScorer(variant=other),
        "ntps_paper_exact": NTPSScorer(variant="paper", centering=False, shrinkage=None, rtol=0.0),
        "logme": LogMEScorer(),
        "hscore": HScoreScorer(),
        "transrate": TransRateScorer(),
        "rankme": RankMeScorer(),
    }


def default_probe():
    """Standardised features and a logistic regression: the accuracy every score is judged by."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@dataclass
class Report:
    """The long table of a study and what :mod:`~sklearn_ntps.study` makes of it.

    ``rows`` hold one dict per (model, dataset, layer, replicate) with a
    column per scorer and ``probe_accuracy``; replicate 0 is the point estimate.
    """

    scores: list
    datasets: dict = field(default_factory=dict)  # name -> {"n_train", "n_test"}
    n_bootstrap: int = 0
    rows: list = field(default_factory=list)

    @property
    def models(self) -> list:
        return list(dict.fromkeys(r["model"] for r in self.rows))

    @property
    def point_rows(self) -> list:
        return [r for r in self.rows if r["replicate"] == 0]

    @property
    def candidates(self) -> list:
        return [*self.scores, *BASELINES]

    @cached_property
    def summary(self) -> dict:
        return summarize(self.rows, self.scores)

    @cached_property
    def recommendation(self) -> dict:
        return recommend(self.rows, self.candidates)

    def to_text(self) -> str:
        """The tables the command line prints: per-group correlations and regrets, then the pick."""
        s, width = self.summary, max(len(c) for c in self.candidates)
        lines = [f"{len(self.models)} model(s) x {len(self.datasets)} data set(s); 95% intervals "
                 f"from {self.n_bootstrap} bootstrap replicates" if self.n_bootstrap else
                 "No bootstrap replicates: no intervals (use --n-bootstrap)."]
        groups = sorted({g for (m, _, g) in s if m == "layer_regret" and g != "mean"})
        shown = [*groups, "mean"] if len(groups) > 1 else groups
        for metric, title in (("layer_spearman", "Spearman with probe accuracy across layers"),
                              ("layer_regret", "Regret of the layer each score picks "
                                               "(best probe accuracy minus accuracy there)")):
            lines += ["", title]
            names = self.scores if metric == "layer_spearman" else self.candidates
            for g in shown:
                label = "mean" if g == "mean" else f"{g[0][-20:]} / {g[1]}"
                cells = [f"{n:<{width}} {_fmt(s.get((metric, n, g)))}" for n in names]
                lines.append(f"  {label}:")
                lines += [f"    {c}" for c in cells]
        rec = self.recommendation
        verdict = "its interval separates from every other" if rec["separated"] else \
            "no separation from: " + ", ".join(rec["not_separated_from"])
        best = ", ".join(rec["tied"])
        lines += ["", f"On these data, lowest mean layer regret: {best} ({verdict})."]
        if RECOMMENDED in self.scores:
            lines += ["", f"Recommended layer, by {RECOMMENDED} (the score docs/validity.md "
                          "recommends):"]
            for g in groups:
                picked = s["layer_pick", RECOMMENDED, g]["estimate"]
                regret = s["layer_regret", RECOMMENDED, g]["estimate"]
                lines.append(f"  {g[0][-20:]} / {g[1]}: layer {picked:.0f} "
                             f"({100 * regret:.1f} accuracy points below the best layer here)")
        return "\n".join(lines)

    def to_json(self) -> str:
        summary = [{"metric": m, "score": n, "group": g if isinstance(g, str) else list(g), **v}
                   for (m, n, g), v in self.summary.items()]
        data = {"scores": self.scores, "datasets": self.datasets, "n_bootstrap": self.n_bootstrap,
                "rows": self.point_rows, "summary": summary,
                "recommendation": self.recommendation}
        # Strict JSON has no NaN: an undefined correlation or interval is null.
        return json.dumps(_nan_to_none(data), indent=2, allow_nan=False)

    def to_csv(self, replicates=False) -> str:
        """The per-layer table (every replicate with ``replicates=True``)."""
        columns = ["model", "dataset", "layer", "replicate", *self.scores, PROBE]
        return _csv(columns, self.rows if replicates else self.point_rows)

    def summary_csv(self) -> str:
        columns = ["metric", "score", "group", "estimate", "se", "low", "high"]
        rows = [{"metric": m, "score": n, "group": g if isinstance(g, str) else " / ".join(
            map(str, g)), **v} for (m, n, g), v in self.summary.items()]
        return _csv(columns, rows)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def _fmt(cell):
    if cell is None or not np.isfinite(cell["estimate"]):
        return "    n/a"
    if not np.isfinite(cell["se"]):
        return f"{cell['estimate']:+7.3f}"
    return f"{cell['estimate']:+7.3f}  [{cell['low']:+.3f}, {cell['high']:+.3f}]"


def _csv(columns, rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run_report(models, datasets, *, scorers=None, probe=None, n_bootstrap=0, n_blocks=20,
               random_state=0, embedding_params=None, progress=True) -> Report:
    """Every score and the held-out probe, for every layer of every model on every data set.

    Parameters
    ----------
    models : sequence of str
        Anything :class:`~sklearn_ntps.HFEmbeddingTransformer` takes.
    datasets : dict
        ``name -> (X_train, y_train, X_test, y_test)``, texts and labels.
    scorers : dict, default=None
        ``column -> estimator`` with the NTPSScorer API (``fit(X, y).score_``);
        None uses :func:`default_scorers`.
    probe : classifier, default=None
        None uses :func:`default_probe`.
    n_bootstrap : int, default=0
        Bootstrap replicates; each resamples the test texts and the training
        texts (in ``n_blocks`` random blocks) and refits every score and probe.
    n_blocks : int, default=20
        Blocks of training texts for the bootstrap (ignored without it).
    random_state : int, default=0
    embedding_params : dict, default=None
        Further :class:`~sklearn_ntps.HFEmbeddingTransformer` parameters.
    progress : bool, default=True

    Returns
    -------
    Report
    """
    scorers = default_scorers() if scorers is None else dict(scorers)
    probe = default_probe() if probe is None else probe
    report = Report(list(scorers), n_bootstrap=n_bootstrap)
    for name, (X_train, y_train, X_test, y_test) in datasets.items():
        # Seeded by data set, so a study split over several runs draws the same.
        rng = np.random.default_rng([random_state, zlib.crc32(name.encode())])
        report.datasets[name] = {"n_train": len(X_train), "n_test": len(X_test)}
        blocks = _blocks(len(X_train), n_blocks if n_bootstrap else 1, rng)
        draws = [(rng.multinomial(len(blocks), np.full(len(blocks), 1 / len(blocks))),
                  rng.integers(0, len(X_test), len(X_test))) for _ in range(n_bootstrap)]
        for model in models:
            params = dict(model_name_or_path=model, progress=progress, **(embedding_params or {}))
            train = HFEmbeddingTransformer(output="tokens", **params).fit()
            test = HFEmbeddingTransformer(output="pooled", **params).fit()
            per_block = [train.transform_layers([X_train[i] for i in b]) for b in blocks]
            y_blocks = [np.asarray(y_train)[b] for b in blocks]
            layers = zip(test.transform_layers(X_test), *per_block)
            for (layer, pooled_test), *parts in tqdm(
                layers, total=test.n_layers_, desc=f"{name}: layers of {model}",
                disable=not progress, delay=2,
            ):
                parts = [m for _, m in parts]
                for rep, (counts, test_idx) in enumerate(
                        [(np.ones(len(blocks), dtype=int), None), *draws]):
                    moments = resample_blocks(parts, counts)
                    y = np.concatenate([np.tile(yb, c) for yb, c in zip(y_blocks, counts)])
                    row = {"model": model, "dataset": name, "layer": layer, "replicate": rep}
                    for column, scorer in scorers.items():
                        row[column] = float(clone(scorer).fit(moments, y).score_)
                    predicted = clone(probe).fit(moments.pooled, y).predict(pooled_test)
                    hits = predicted == np.asarray(y_test)
                    row[PROBE] = float(hits.mean() if test_idx is None else hits[test_idx].mean())
                    report.rows.append(row)
    return report


def _blocks(n, n_blocks, rng):
    if n_blocks == 1:
        return [np.arange(n)]
    return [np.sort(b) for b in np.array_split(rng.permutation(n), min(n_blocks, n))]


def plot_report(report: Report) -> bytes:
    """Per-layer panels (each score rescaled to [0, 1] beside probe accuracy) and the summaries.

    Uses matplotlib's object API, so a notebook's backend and figures are left alone.
    """
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys((r["model"], r["dataset"]) for r in report.point_rows))
    n_cols = max(2, min(3, len(groups)))
    n_rows = -(-len(groups) // n_cols) + 1
    fig = Figure(figsize=(5.6 * n_cols, 4.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    summary = report.summary
    for ax, group in zip(axes[:-1].ravel(), groups):
        _plot_layers(ax, report, group)
    for ax in axes[:-1].ravel()[len(groups):]:
        ax.set_visible(False)
    _plot_bars(axes[-1][0], summary, report.candidates, "layer_regret", 100,
               "regret of the picked layer, accuracy points (mean over panels)")
    _plot_bars(axes[-1][1], summary, report.scores, "layer_spearman", 1,
               "Spearman with probe accuracy across layers (mean over panels)")
    for ax in axes[-1][2:]:
        ax.set_visible(False)
    intervals = (f"bars: 95% intervals from {report.n_bootstrap} bootstrap replicates"
                 if report.n_bootstrap else "no intervals (--n-bootstrap)")
    fig.suptitle(f"Which score tracks a held-out linear probe? {len(report.models)} model(s), "
                 f"{len(report.datasets)} data set(s); {intervals}", fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _plot_layers(ax, report, group):
    rows = sorted((r for r in report.point_rows if (r["model"], r["dataset"]) == group),
                  key=lambda r: r["layer"])
    layers = [r["layer"] for r in rows]
    for score in report.scores:
        v = np.array([r[score] for r in rows], dtype=float)
        rho = report.summary.get(("layer_spearman", score, group), {}).get("estimate", np.nan)
        label = f"{score} (ρ={rho:+.2f})" if np.isfinite(rho) else score
        ax.plot(layers, (v - v.min()) / (np.ptp(v) or 1.0), alpha=0.9, label=label,
                lw=2.6 if score == RECOMMENDED else 1.1)
    ax2 = ax.twinx()
    ax2.plot(layers, [r[PROBE] for r in rows], "k^--", lw=1.8, ms=3, label="probe accuracy")
    ax2.set_ylabel("held-out probe accuracy (black)")
    ax.set(title=f"{group[0][-28:]} on {group[1]}", xlabel="layer (0 = embeddings)",
           ylabel="score, rescaled to [0, 1]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
              frameon=False)


def _plot_bars(ax, summary, names, metric, scale, title):
    cells = [summary.get((metric, n, "mean"), {"estimate": np.nan, "low": np.nan,
                                               "high": np.nan}) for n in names]
    est = scale * np.array([c["estimate"] for c in cells], dtype=float)
    err = scale * np.array([[c["estimate"] - c["low"], c["high"] - c["estimate"]]
                            for c in cells], dtype=float).T
    colors = ["tab:orange" if n == RECOMMENDED else "tab:blue" for n in names]
    err = None if np.isnan(err).all() else np.nan_to_num(err)  # no replicates: no bars
    ax.barh(range(len(names)), est, xerr=err, color=colors, alpha=0.8, capsize=3)
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


def write_atomic(path: Path, data) -> None:
    """Write all of ``data`` or nothing: a temporary file renamed into place."""
    data = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_report(report: Report, folder, *, plot=True) -> list:
    """Write ``report.csv`` (per layer), ``replicates.csv``, ``summary.csv``,
    ``report.json`` and ``report.png``; return their paths.

    Everything is rendered in memory first, so an error or Ctrl-C leaves the
    folder as it was.
    """
    folder = check_writable(folder)
    files = {"report.csv": report.to_csv(), "replicates.csv": report.to_csv(replicates=True),
             "summary.csv": report.summary_csv(), "report.json": report.to_json()}
    if plot:
        files["report.png"] = plot_report(report)
    paths = []
    for name, data in files.items():
        write_atomic(folder / name, data)
        paths.append(folder / name)
    return paths
