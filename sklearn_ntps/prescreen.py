"""Will LoRA pay off? NTPS before and after fine-tuning, the gain, and rule C of docs/lora.md.

For each task: NTPS (both variants) on the training texts with the base
weights, a frozen linear probe and an :class:`~sklearn_ntps.lora.HFLoRAClassifier`
scored on the test texts, and NTPS again on the merged LoRA weights. Across
tasks: Spearman(NTPS before, gain) with a bootstrap interval over tasks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from . import study
from ._utils import csv_text, json_text
from .estimators import NTPSScorer
from .scorers import default_probe
from .scoring import VARIANTS

# Rule C of docs/lora.md, fitted on the bundled study (SmolLM2-135M, 13 tasks,
# 2026-11-29; docs/lora/prescreen.json, `python docs/lora_tables.py` prints it):
# the variant with the more negative Spearman, the line gain = intercept + slope
# * NTPS, and Spearman's 95% interval. It straddles zero, so the rule recommends
# nothing from NTPS; the constants are kept so the command can say why.
RULE_C = {
    "variant": "paper", "intercept": -0.12667, "slope": 0.29396,
    "rho": -0.23205, "low": -0.67981, "high": 0.33769, "n_tasks": 13, "significant": False,
}
WORTH_IT_POINTS = 2.0


@dataclass
class Prescreen:
    """Per-task results of :func:`run_prescreen`; ``rows`` hold one dict per task."""

    model: str
    rows: list = field(default_factory=list)
    rule: dict | None = None

    def spearman(self, variant, n_boot=2000, seed=0) -> dict:
        """Spearman(NTPS before, gain) across tasks, with a percentile bootstrap over tasks."""
        rows = [r for r in self.rows if r.get("gain") is not None]
        x = np.array([r[f"ntps_{variant}_before"] for r in rows])
        g = np.array([r["gain"] for r in rows])
        out = {"n_tasks": len(rows), "estimate": study.spearman(x, g), "low": np.nan,
               "high": np.nan}
        if len(rows) >= 4:
            rng = np.random.default_rng(seed)
            draws = rng.integers(0, len(rows), (n_boot, len(rows)))
            boot = [study.spearman(x[i], g[i]) for i in draws]
            boot = np.array(boot)[np.isfinite(boot)]
            if boot.size:
                out["low"], out["high"] = np.percentile(boot, [2.5, 97.5])
        return out

    def to_text(self) -> str:
        head = (f"{'task':<28} {'NTPS_w':>7} {'->':>2} {'after':>6} {'NTPS_p':>7} {'after':>6} "
                f"{'probe':>6} {'LoRA':>6} {'gain':>6}  recommendation")
        lines = [f"LoRA prescreening, {self.model}", head]
        for r in self.rows:
            cells = [_cell(r.get(k)) for k in ("ntps_whitened_before", "ntps_whitened_after",
                                              "ntps_paper_before", "ntps_paper_after",
                                              "probe_accuracy", "lora_accuracy", "gain")]
            lines.append(f"{r['task'][-28:]:<28} {cells[0]:>7}    {cells[1]:>6} {cells[2]:>7} "
                         f"{cells[3]:>6} {cells[4]:>6} {cells[5]:>6} {cells[6]:>6}  "
                         f"{r['recommendation']}")
        for variant in VARIANTS:
            rho = self.spearman(variant)
            if np.isfinite(rho["estimate"]):
                lines.append(f"Spearman(NTPS_{variant} before, gain) over {rho['n_tasks']} tasks: "
                             f"{rho['estimate']:+.2f} [{rho['low']:+.2f}, {rho['high']:+.2f}]")
        lines.append(rule_text(self.rule))
        return "\n".join(lines)

    def to_json(self) -> str:
        rhos = {v: self.spearman(v) for v in VARIANTS}
        data = {"model": self.model, "rows": self.rows, "spearman": rhos, "rule": self.rule}
        return json_text(data)

    def to_csv(self) -> str:
        return csv_text(list(dict.fromkeys(k for r in self.rows for k in r)), self.rows)


def rule_c(ntps_by_variant: dict, rule="bundled") -> tuple[str, float | None]:
    """Rule C of docs/lora.md: ``("LoRA likely worth it" | "LoRA likely not worth it" |
    "no evidence from NTPS", predicted gain)``.

    Parameters
    ----------
    ntps_by_variant : dict
        NTPS of the task's training texts with the base weights, per variant.
    rule : dict, "bundled" or None, default="bundled"
        A :func:`fit_rule` dict, ``"bundled"`` (:data:`RULE_C`, the bundled
        study's) or None (no rule).

    Returns
    -------
    label : str
    predicted_gain : float or None
        In accuracy points; None when the rule's Spearman is not below zero.

    Examples
    --------
    >>> from sklearn_ntps.prescreen import rule_c
    >>> rule_c({"whitened": 0.4, "paper": 0.6})  # the bundled study's interval straddles 0
    ('no evidence from NTPS', None)
    >>> rule = {"variant": "paper", "intercept": 0.1, "slope": -0.1, "significant": True}
    >>> rule_c({"whitened": 0.4, "paper": 0.5}, rule)
    ('LoRA likely worth it', 5.0)
    """
    rule = _resolve_rule(rule)
    if rule is None or not rule.get("significant"):
        return "no evidence from NTPS", None
    predicted = 100 * (rule["intercept"] + rule["slope"] * ntps_by_variant[rule["variant"]])
    label = "LoRA likely worth it" if predicted >= WORTH_IT_POINTS else "LoRA likely not worth it"
    return label, float(predicted)


def rule_text(rule) -> str:
    """What the recommendation rests on, in one paragraph."""
    if rule is None:
        return ("Rule C (docs/lora.md): no fitted rule is available, so NTPS recommends nothing; "
                "run LoRA to measure the gain.")
    head = (f"Rule C (docs/lora.md), from the bundled study ({rule['n_tasks']} tasks): "
            f"Spearman(NTPS_{rule['variant']}, gain) = {rule['rho']:+.2f} "
            f"[{rule['low']:+.2f}, {rule['high']:+.2f}]")
    line = f"gain = {100 * rule['intercept']:+.1f} {100 * rule['slope']:+.1f} x NTPS points"
    if not rule["significant"]:
        return (f"{head}, not below zero: NTPS gave no evidence about LoRA's gain, so nothing "
                f"is recommended from it (the fitted line, {line}, is not used); run LoRA to "
                "measure the gain.")
    return (f"{head}, below zero; predicted {line}; 'worth it' from "
            f"{WORTH_IT_POINTS:.0f} points.")


def fit_rule(prescreen: Prescreen) -> dict:
    """Rule C's constants from a finished study: the variant, the line and its interval."""
    rhos = {v: prescreen.spearman(v) for v in VARIANTS}
    variant = min(VARIANTS, key=lambda v: (rhos[v]["estimate"], VARIANTS.index(v)))
    rows = [r for r in prescreen.rows if r.get("gain") is not None]
    x = np.array([r[f"ntps_{variant}_before"] for r in rows])
    slope, intercept = np.polyfit(x, [r["gain"] for r in rows], 1)
    rho = rhos[variant]
    return {"variant": variant, "intercept": float(intercept), "slope": float(slope),
            "rho": rho["estimate"], "low": rho["low"], "high": rho["high"],
            "n_tasks": len(rows), "significant": bool(rho["high"] < 0)}


def _resolve_rule(rule):
    return RULE_C if isinstance(rule, str) and rule == "bundled" else rule


def run_prescreen(model, tasks, *, run_lora=True, lora_params=None, rule="bundled",
                  embedding_params=None, max_length=128, progress=True) -> Prescreen:
    """NTPS before (and after) LoRA, the frozen probe, LoRA and the gain, for each task.

    Parameters
    ----------
    model : str
        Anything :class:`~sklearn_ntps.HFEmbeddingTransformer` takes.
    tasks : dict
        ``name -> (X_train, y_train, X_test, y_test)``.
    run_lora : bool, default=True
        False scores NTPS and the probe only, and recommends by rule C.
    lora_params : dict, default=None
        :class:`~sklearn_ntps.lora.HFLoRAClassifier` parameters (the protocol's by default).
    rule : dict, "bundled" or None, default="bundled"
        Rule C's constants; "bundled" is :data:`RULE_C`, the bundled study's.
    embedding_params : dict, default=None
        :class:`~sklearn_ntps.HFEmbeddingTransformer` parameters of NTPS and the probe.
    max_length : int, default=128
        The truncation of NTPS, the probe and LoRA alike (so it is not in
        ``lora_params`` or ``embedding_params``): the gain compares them on
        the same tokens.
    progress : bool, default=True

    Returns
    -------
    Prescreen
    """
    from sklearn.base import clone

    from .embedding import HFEmbeddingTransformer

    if "max_length" in {**(lora_params or {}), **(embedding_params or {})}:
        raise ValueError("Pass max_length to run_prescreen itself: NTPS, the probe and LoRA "
                         "share it.")
    rule = _resolve_rule(rule)
    out = Prescreen(model=model, rule=rule)
    params = dict(progress=progress, max_length=max_length, **(embedding_params or {}))
    for name, (X_train, y_train, X_test, y_test) in tasks.items():
        row = {"task": name, "n_train": len(X_train), "n_test": len(X_test)}
        before = HFEmbeddingTransformer(model_name_or_path=model, output="tokens", **params)
        row.update(_ntps(before.fit_transform(X_train), y_train, "before"))
        pooled = HFEmbeddingTransformer(model_name_or_path=model, **params).fit()
        probe = clone(default_probe()).fit(pooled.transform(X_train), y_train)
        row["probe_accuracy"] = float(probe.score(pooled.transform(X_test), y_test))
        row["recommendation"], row["predicted_gain"] = rule_c(
            {v: row[f"ntps_{v}_before"] for v in VARIANTS}, rule)
        if run_lora:
            from .lora import HFLoRAClassifier

            lora = HFLoRAClassifier(model_name_or_path=model, progress=progress,
                                    max_length=max_length,
                                    **(lora_params or {})).fit(X_train, y_train)
            row["lora_accuracy"] = float(lora.score(X_test, y_test))
            row["gain"] = row["lora_accuracy"] - row["probe_accuracy"]
            after = HFEmbeddingTransformer(model_name_or_path=lora, output="tokens", **params)
            row.update(_ntps(after.fit_transform(X_train), y_train, "after"))
            row["lora_fit_seconds"] = float(getattr(lora, "fit_time_", np.nan))
        out.rows.append(row)
    return out


def _ntps(moments, y, when):
    return {f"ntps_{v}_{when}": float(NTPSScorer(variant=v).fit(moments, y).ntps_)
            for v in VARIANTS}


def _cell(value):
    return "" if value is None else f"{value:.3f}"


def plot_prescreen(prescreen: Prescreen) -> bytes:
    """NTPS before LoRA against the gain (one panel per variant), and NTPS before vs after."""
    from matplotlib.figure import Figure

    rows = [r for r in prescreen.rows if r.get("gain") is not None]
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, variant in zip(axes, VARIANTS):
        x = np.array([r[f"ntps_{variant}_before"] for r in rows])
        g = 100 * np.array([r["gain"] for r in rows])
        ax.scatter(x, g, color="tab:blue")
        for r, xi, gi in zip(rows, x, g):
            ax.annotate(r["task"][-18:], (xi, gi), fontsize="xx-small", alpha=0.7)
        if len(rows) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, g, 1)
            grid = np.linspace(x.min(), x.max(), 2)
            ax.plot(grid, intercept + slope * grid, "k--", lw=1)
        rho = prescreen.spearman(variant)
        ax.axhline(WORTH_IT_POINTS, color="tab:orange", lw=0.8)
        ax.set(xlabel=f"NTPS ({variant}) before LoRA",
               ylabel="LoRA gain over frozen probe (points)",
               title=f"ρ = {rho['estimate']:+.2f} [{rho['low']:+.2f}, {rho['high']:+.2f}]")
        ax.grid(alpha=0.3)
    for variant, marker in zip(VARIANTS, "os"):
        before = [r[f"ntps_{variant}_before"] for r in rows]
        after = [r[f"ntps_{variant}_after"] for r in rows]
        axes[2].scatter(before, after, marker=marker, label=variant)
    axes[2].axline((0, 0), slope=1, color="k", lw=0.8)
    axes[2].set(xlabel="NTPS before LoRA", ylabel="NTPS after LoRA (merged weights)",
                title="above the line: NTPS rose")
    axes[2].legend(fontsize="small")
    axes[2].grid(alpha=0.3)
    fig.suptitle(f"LoRA prescreening, {prescreen.model}, {len(rows)} tasks; orange line: "
                 f"'worth it' from {WORTH_IT_POINTS:.0f} points", fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def intent_subtasks(data, *, n_groups=4, group_size=5, seed=0):
    """Disjoint groups of classes drawn from ``data``'s classes (sorted), the protocol's sub-tasks.

    ``data`` is ``(X_train, y_train, X_test, y_test)``; returns a list of the
    same tuples, restricted to each group's classes.
    """
    X_train, y_train, X_test, y_test = data
    classes = np.unique(np.asarray(y_train))
    if n_groups * group_size > len(classes):
        raise ValueError(f"{n_groups} groups of {group_size} classes need "
                         f"{n_groups * group_size} classes, the task has {len(classes)}.")
    drawn = np.random.default_rng(seed).permutation(classes)[: n_groups * group_size]
    out = []
    for group in drawn.reshape(n_groups, group_size):
        keep_train = np.isin(np.asarray(y_train), group)
        keep_test = np.isin(np.asarray(y_test), group)
        out.append(([x for x, k in zip(X_train, keep_train) if k], np.asarray(y_train)[keep_train],
                    [x for x, k in zip(X_test, keep_test) if k], np.asarray(y_test)[keep_test]))
    return out
