"""The main job: NTPS and a held-out linear probe for every layer of some models.

For each model, one forward pass over the training texts gives every layer's
statistics; per layer, both NTPS variants come from the same two subspaces,
and a logistic-regression probe is trained on the training split and scored
on the test split. The table, its rank correlations and a plot are written
atomically, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from .embedding import HFEmbeddingTransformer
from .scoring import (
    autoregressive_subspace,
    curve_from_subspaces,
    encode_labels,
    perception_side,
    resolve_n_components,
)

COLUMNS = ("model", "layer", "ntps", "ntps_whitened", "probe_accuracy")


@dataclass
class Report:
    """Per-layer results of :func:`layer_report`, with their rank correlations.

    ``rows`` hold one dict per (model, layer) with the keys of ``COLUMNS``.
    """

    dataset: str
    n_train: int
    n_test: int
    n_components: float
    rows: list = field(default_factory=list)

    def spearman(self, model=None) -> dict:
        """Spearman correlation of each NTPS variant with probe accuracy over layers."""
        rows = [r for r in self.rows if model is None or r["model"] == model]
        acc = [r["probe_accuracy"] for r in rows]
        return {
            variant: float(spearmanr([r[variant] for r in rows], acc).statistic)
            if len(rows) > 2 else float("nan")
            for variant in ("ntps", "ntps_whitened")
        }

    @property
    def models(self) -> list:
        return list(dict.fromkeys(r["model"] for r in self.rows))

    def to_text(self) -> str:
        """The table and its correlations, as printed by the command line."""
        lines = [f"{'model':<24} {'layer':>5} {'NTPS':>7} {'NTPS_w':>7} {'probe acc':>9}"]
        for r in self.rows:
            lines.append(
                f"{r['model'][-24:]:<24} {r['layer']:>5} {r['ntps']:>7.3f} "
                f"{r['ntps_whitened']:>7.3f} {r['probe_accuracy']:>9.3f}"
            )
        for model in self.models:
            rho = self.spearman(model)
            lines.append(
                f"Spearman over layers ({model}): NTPS {rho['ntps']:+.3f}, "
                f"NTPS_w {rho['ntps_whitened']:+.3f}"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        summary = {m: self.spearman(m) for m in self.models}
        return json.dumps({**asdict(self), "spearman": summary}, indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def layer_report(models, X_train, y_train, X_test, y_test, *, dataset="", n_components=0.25,
                 probe=None, embedding_params=None, progress=True) -> Report:
    """NTPS (both variants) and held-out probe accuracy for every layer of every model.

    Parameters
    ----------
    models : sequence of str
        Anything :class:`~sklearn_ntps.HFEmbeddingTransformer` takes.
    X_train, y_train : texts and labels that NTPS and the probe are fitted on.
    X_test, y_test : texts and labels the probe is scored on.
    dataset : str, default=""
        A name for the report.
    n_components : int or float, default=0.25
        The NTPS subspace dimension k (int, or fraction of the hidden size).
    probe : classifier, default=None
        None: standardised features and ``LogisticRegression(max_iter=1000)``.
    embedding_params : dict, default=None
        Further :class:`~sklearn_ntps.HFEmbeddingTransformer` parameters.
    progress : bool, default=True

    Returns
    -------
    Report
    """
    probe = probe if probe is not None else make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000))
    report = Report(dataset, len(X_train), len(X_test), n_components)
    classes, y_idx = encode_labels(y_train)
    for model in models:
        params = dict(model_name_or_path=model, progress=progress, **(embedding_params or {}))
        train = HFEmbeddingTransformer(output="tokens", **params).fit()
        test = HFEmbeddingTransformer(output="pooled", **params).fit()
        k = resolve_n_components(n_components, train.n_features_out_)
        layers = zip(train.transform_layers(X_train), test.transform_layers(X_test))
        for (layer, moments), (_, pooled_test) in tqdm(
            layers, total=train.n_layers_, desc=f"Layers of {model}", disable=not progress, delay=2,
        ):
            _, V = autoregressive_subspace(moments)
            perception = perception_side(moments.pooled, y_idx, len(classes))
            row = {"model": model, "layer": layer}
            for variant, column in (("paper", "ntps"), ("whitened", "ntps_whitened")):
                row[column] = float(curve_from_subspaces(perception, V, variant=variant)[k - 1])
            fitted = clone(probe).fit(moments.pooled, y_train)
            row["probe_accuracy"] = float(fitted.score(pooled_test, y_test))
            report.rows.append(row)
    return report


def plot_report(report: Report):
    """NTPS, whitened NTPS and probe accuracy against layer, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report.models
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 4.2), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models):
        rows = [r for r in report.rows if r["model"] == model]
        layers = [r["layer"] for r in rows]
        rho = report.spearman(model)
        ax.plot(layers, [r["ntps"] for r in rows], "o-", label=f"NTPS (ρ={rho['ntps']:+.2f})")
        ax.plot(layers, [r["ntps_whitened"] for r in rows], "s-",
                label=f"whitened NTPS (ρ={rho['ntps_whitened']:+.2f})")
        ax.plot(layers, [r["probe_accuracy"] for r in rows], "k^--", label="probe accuracy")
        ax.set(title=f"{model} on {report.dataset}", xlabel="layer (0 = embeddings)", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0][0].set_ylabel("score")
    fig.suptitle(f"NTPS (k={report.n_components}) vs held-out linear probe, "
                 f"{report.n_train} train / {report.n_test} test texts; ρ: Spearman over layers",
                 fontsize="medium")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


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
    """Write ``report.csv``, ``report.json`` and ``report.png``; return their paths.

    Everything is rendered in memory first, so an error or Ctrl-C leaves the
    folder as it was.
    """
    folder = check_writable(folder)
    files = {"report.csv": report.to_csv(), "report.json": report.to_json()}
    if plot:
        files["report.png"] = plot_report(report)
    paths = []
    for name, data in files.items():
        write_atomic(folder / name, data)
        paths.append(folder / name)
    return paths

