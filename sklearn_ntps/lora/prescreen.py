"""Will LoRA pay off? Measure it: the frozen model's scores, the probe, LoRA and the gain.

What the command may recommend is set by docs/lora.md section 4 (study v2), and that study
recommends nothing: it could not detect whether NTPS, or any score of the frozen model,
relates to LoRA's gain over the frozen probe (section 5).

For each task: NTPS and the peers on the training texts with the base
weights (on the probe's footing, as the study measured them), a frozen
linear probe and its headroom (1 - held-out accuracy), the recommendation of
the bundled rule :data:`RULE` (none, as the study found nothing to read), and,
when LoRA runs, an :class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier`
scored on the test texts, the measured gain and NTPS again on the merged LoRA
weights.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from .._utils import csv_text, json_text
from ..evidence import study
from ..scores.registry import score_names


def predictors() -> tuple:
    """NTPS, the scores registered for the prescreen, and the probe's headroom."""
    return ("ntps", *score_names(prescreen=True), "headroom")

WORTH_IT_POINTS = 2.0
# Under 4 tasks a Spearman takes a handful of values (3 tasks: +-1 or +-0.5 only) and the
# bootstrap interval has nothing to resample, so no such correlation is reported.
MIN_SPEARMAN_TASKS = 4
# The rule of docs/lora.md section 4 from the LoRA study v2 (run 2026-11-30; docs/lora_v2/
# study.json, which rule_from_study() turns into this, and a test holds the two equal). No
# predictor of the gain, not even headroom, beat the mean gain of the other tasks when each
# task was left out, so the command recommends nothing and prints the study's gains, at the
# study's own training sizes (n_train).
RULE = {
    "predictor": "headroom", "intercept": -1.69662, "slope": 21.1251, "mae": 3.97932,
    "headroom_mae": 3.97932, "mean_gain_mae": 3.85656, "beats_headroom": False,
    "beats_mean_gain": False,
    "difference_from_headroom": {"estimate": 0.0, "low": 0.0, "high": 0.0}, "n_rows": 20,
    "n_tasks": 12, "models": ["SmolLM2-135M", "all-MiniLM-L6-v2"], "gain_median": 0.735294,
    "gain_min": -5.10204, "gain_max": 16.4, "n_train": [100, 300],
    "ntps_spearman": {"estimate": -0.160963, "low": -0.830465, "high": 0.508539,
                      "p": 0.491351},
}
# The paper's weakest Spearman(NTPS, gain); the power of a study is read at it.
PAPER_WEAKEST = -0.40
# LoRA study v3 (docs/lora_v3_plan.md, run 2026-12-07; docs/lora_v3/study.json, which
# study_v3_from() turns into this, and a test holds the two equal): the primary Spearman with
# its source-clustered interval, the gains against LoRA's own start, and the smallest |rho| the
# design detects with 80% power (the plan's section 6). What the command says of it is the
# plan's section 7 rule, in study_v3_text().
STUDY_V3 = {
    "model": "all-MiniLM-L6-v2", "n_tasks": 24, "n_sources": 10, "n_train": 1000,
    "estimate": -0.37, "low": -0.97, "high": 0.23, "smallest_rho": 0.69,
    "gain_median": 0.2, "gain_min": -3.5, "gain_max": 9.0, "lora_better": 2, "start_better": 1,
    "rise_d": {"estimate": 0.022, "low": 0.002, "high": 0.042}, "rise_claimed": 14,
}


def read_score(rule="bundled") -> str | None:
    """The score the rule's recommendation reads, or None when it reads none.

    A rule whose best predictor did not beat the other tasks' mean gain reads no
    score: it recommends nothing, so nothing it names is shown as "the score the
    rule reads".
    """
    rule = _resolve_rule(rule)
    if rule is None or not rule.get("beats_mean_gain"):
        return None
    return rule["predictor"]


def spearman_power(rho, n_rows, alpha=0.05) -> float:
    """Probability that a two-sided Spearman test at ``alpha`` on ``n_rows`` detects ``rho``.

    Fisher's z with the variance 1.06 / (n - 3) of Spearman's coefficient (Fieller,
    Hartley and Pearson 1957), rows taken as independent.

    Examples
    --------
    >>> from sklearn_ntps.lora.prescreen import spearman_power
    >>> round(spearman_power(-0.40, 20), 2)   # study v2: the paper's weakest, on its 20 rows
    0.4
    """
    from scipy.stats import norm

    if n_rows <= 3:
        return float("nan")
    shift = abs(np.arctanh(rho)) / np.sqrt(1.06 / (n_rows - 3))
    crit = norm.ppf(1 - alpha / 2)
    return float(norm.cdf(shift - crit) + norm.cdf(-shift - crit))


@dataclass
class Prescreen:
    """Per-task results of :func:`run_prescreen`; ``rows`` hold one dict per task."""

    model: str
    rows: list = field(default_factory=list)
    rule: dict | None = None

    def spearman(self, predictor="ntps", n_boot=2000, seed=0) -> dict:
        """Spearman(predictor, gain) across this run's tasks, with a 95% interval.

        The interval comes from a bootstrap over the tasks: the estimate +- t(n - 1) times the
        bootstrap standard error, clipped to [-1, 1] (few tasks: the normal quantile would be
        too narrow). Under :data:`MIN_SPEARMAN_TASKS` tasks with a gain the estimate and
        interval are NaN (null in JSON): so few tasks give no correlation worth reading.
        """
        from scipy.stats import t as student_t

        rows = [r for r in self.rows if r.get("gain") is not None]
        out = {"n_tasks": len(rows), "estimate": np.nan, "low": np.nan, "high": np.nan}
        if len(rows) < MIN_SPEARMAN_TASKS:
            return out
        x = np.array([r[predictor] for r in rows], dtype=float)
        g = np.array([r["gain"] for r in rows], dtype=float)
        out["estimate"] = study.spearman(x, g)
        if np.isfinite(out["estimate"]):
            draws = np.random.default_rng(seed).integers(0, len(rows), (n_boot, len(rows)))
            boot = np.array([study.spearman(x[i], g[i]) for i in draws])
            boot = boot[np.isfinite(boot)]
            if boot.size >= 2:
                half = student_t.ppf(0.975, len(rows) - 1) * boot.std(ddof=1)
                out["low"] = max(out["estimate"] - half, -1.0)
                out["high"] = min(out["estimate"] + half, 1.0)
        return out

    def to_text(self) -> str:
        """The table the command line prints: a row per task, gains in accuracy points.

        Returns
        -------
        str
            Per task: the scores before (and NTPS after) LoRA, the probe,
            LoRA's own start (its cross-validated probe, fitted without its
            validation texts), LoRA and the measured gain (LoRA minus its
            start), and the recommendation (with the predicted
            gain and the score it reads only when the rule reads one); then the
            Spearman correlations with the gain (from
            :data:`MIN_SPEARMAN_TASKS` tasks on), the scores beside their
            chance levels, the rule and the training sizes.
        """
        read = read_score(self.rule)
        columns = {"ntps": "NTPS", "ntps_after": "after"}
        if read not in (None, "ntps"):  # the score the recommendation reads, beside NTPS
            columns[read] = read
        columns["probe_accuracy"] = "probe"
        if read is not None:
            columns["predicted_gain"] = "pred."
        # the gain is LoRA's against its own start ("start"): its probe on the same texts
        columns.update(start_accuracy="start", lora_accuracy="LoRA", gain="gain")
        widths = {k: max(len(v), 6) for k, v in columns.items()}
        lines = [f"LoRA prescreening, {self.model} (gains in accuracy points)",
                 f"{'task':<26} " + " ".join(f"{v:>{widths[k]}}" for k, v in columns.items())
                 + "  recommendation"]
        for r in self.rows:
            cells = [f"{_cell(r.get(k), '{:+.1f}' if 'gain' in k else '{:.3f}'):>{widths[k]}}"
                     for k in columns]
            lines.append(f"{r['task'][-26:]:<26} {' '.join(cells)}  {r['recommendation']}")
        for name in dict.fromkeys(("ntps", read or "ntps")):
            rho = self.spearman(name)
            n = rho["n_tasks"]
            if n == 0:  # no gain measured (--no-lora): nothing to correlate
                continue
            if n < MIN_SPEARMAN_TASKS:
                lines.append(f"Spearman({name}, gain) omitted: {n} task{'s' * (n != 1)}, "
                             f"{MIN_SPEARMAN_TASKS} needed")
            elif not np.isfinite(rho["estimate"]):
                lines.append(f"Spearman({name}, gain) over these {n} tasks: undefined (tied "
                             "values)")
            else:
                interval = (f"[{rho['low']:+.2f}, {rho['high']:+.2f}]"
                            if np.isfinite(rho["low"]) else "(no interval)")
                lines.append(f"Spearman({name}, gain) over these {n} tasks: "
                             f"{rho['estimate']:+.2f} {interval}")
        lines += self._chance_lines()
        lines.append(study_v3_text())
        lines.append(rule_text(self.rule))
        lines += self._sizes_lines()
        return "\n".join(lines)

    def _sizes_lines(self) -> list:
        """The training sizes of this run beside the study's, where its gains were measured."""
        study_sizes = (self.rule or {}).get("n_train")
        if not study_sizes or not self.rows:
            return []
        mine = sorted({int(r["n_train"]) for r in self.rows if r.get("n_train") is not None})
        if not mine:
            return []
        return [f"This run: {_or(mine)} training texts per task. The study's gains were "
                f"measured at {_or(study_sizes)} and are not a forecast for these tasks or "
                "sizes."]

    def _chance_lines(self) -> list:
        """Every score beside its chance level (its mean and sd over shuffled labels)."""
        names = [n for n in ("ntps", *score_names(prescreen=True), "ntps_after") if f"{n}_chance" in
                 (self.rows[0] if self.rows else {})]
        if not names:
            return []
        lines = ["Scores beside their chance level (mean +- sd over shuffles of the labels; z: "
                 "distance from it in sd):"]
        for r in self.rows:
            cells, above = [], False
            for n in names:
                chance, sd = r[f"{n}_chance"], r[f"{n}_chance_std"]
                z = (r[n] - chance) / sd if sd > 0 else float("nan")
                above |= bool(z > 2)
                cells.append(f"{n} {r[n]:.3f} (chance {chance:.3f} +- {sd:.3f}, z {z:+.1f})")
            verdict = "" if above else ("  -> every score is within 2 sd of its chance level "
                                        "here: on these texts none tells the labels from "
                                        "random ones")
            lines.append(f"  {r['task'][-26:]}: " + "; ".join(cells) + verdict)
        return lines

    def to_json(self) -> str:
        """The prescreen as strict JSON.

        Returns
        -------
        str
            The model, the rows, :meth:`spearman` of every predictor and the
            rule, indented; NaN and infinities are null.
        """
        rhos = {p: self.spearman(p) for p in predictors()}
        data = {"model": self.model, "rows": self.rows, "spearman": rhos, "rule": self.rule}
        return json_text(data)

    def to_csv(self) -> str:
        """The rows as CSV, one per task.

        Returns
        -------
        str
            CSV text with every key of any row as a column, in order of first appearance.
        """
        return csv_text(list(dict.fromkeys(k for r in self.rows for k in r)), self.rows)


def recommend(scores: dict, rule="bundled") -> tuple[str, float | None]:
    """The recommendation of docs/lora.md section 4 for one task.

    Parameters
    ----------
    scores : dict
        The task's predictors before LoRA: ``"ntps"``, the peers (``"logme"``,
        ``"knn"``, ``"ridge_loo"``) on the probe's footing, and ``"headroom"``
        (1 - the frozen probe's held-out accuracy). Only the rule's predictor
        is read, and none when the rule reads no score (:func:`read_score`).
    rule : dict, "bundled" or None, default="bundled"
        A :func:`rule_from_study` dict, ``"bundled"`` (:data:`RULE`) or None.

    Returns
    -------
    label : str
        "LoRA likely worth it" (a predicted gain of :data:`WORTH_IT_POINTS` or
        more) or "LoRA likely not worth it" when the rule's predictor beat the
        other tasks' mean gain in its study; otherwise "no recommendation". The
        bundled study v2 gives "no recommendation" for every task: no score
        beat the mean gain there.
    predicted_gain : float or None
        In accuracy points; None without a recommendation.

    Examples
    --------
    >>> from sklearn_ntps.lora.prescreen import recommend
    >>> rule = {"predictor": "headroom", "intercept": -1.0, "slope": 20.0,
    ...         "beats_mean_gain": True}
    >>> recommend({"ntps": 0.4, "headroom": 0.25}, rule)
    ('LoRA likely worth it', 4.0)
    >>> recommend({"ntps": 0.4, "headroom": 0.1}, rule)
    ('LoRA likely not worth it', 1.0)
    >>> recommend({"ntps": 0.4, "headroom": 0.1}, {**rule, "beats_mean_gain": False})
    ('no recommendation', None)
    """
    rule = _resolve_rule(rule)
    predictor = read_score(rule)
    if predictor is None:
        return "no recommendation", None
    predicted = float(rule["intercept"] + rule["slope"] * scores[predictor])
    label = "LoRA likely worth it" if predicted >= WORTH_IT_POINTS else "LoRA likely not worth it"
    return label, predicted


def study_v3_text(v3=None) -> str:
    """What study v3 found of NTPS and the gain, said by its registered rule (plan, section 7)."""
    v3 = STUDY_V3 if v3 is None else v3
    where = (f"In study v3 ({v3['n_tasks']} tasks from {v3['n_sources']} sources, {v3['model']}, "
             f"{v3['n_train']:,} training texts each)")
    rho = f"Spearman(NTPS, gain) {v3['estimate']:+.2f} [{v3['low']:+.2f}, {v3['high']:+.2f}]"
    if v3["high"] < 0:
        verdict = (f"{where}, tasks with a higher NTPS gained less from LoRA: {rho} (the "
                   "paper: -0.40 to -0.90). NTPS ranks tasks; it does not give the gain in "
                   "points.")
    elif v3["low"] > 0:
        verdict = (f"{where}, tasks with a higher NTPS gained more, the opposite of the paper: "
                   f"{rho}.")
    elif v3["low"] > PAPER_WEAKEST:
        verdict = (f"Study v3 found no relation of the paper's size: {rho} excludes the "
                   "paper's -0.40 to -0.90. NTPS does not say whether LoRA pays off on tasks "
                   "like these.")
    else:
        verdict = (f"{where}, the study could not detect a relation between NTPS and LoRA's "
                   f"gain: {rho}. It detects |rho| of {v3['smallest_rho']:.2f} or more with 80% "
                   "power; a weaker relation may exist unseen.")
    return (f"{verdict} Its gains against LoRA's own start: median {v3['gain_median']:+.1f} "
            f"points, from {v3['gain_min']:+.1f} to {v3['gain_max']:+.1f}; McNemar p < 0.05 for "
            f"LoRA on {v3['lora_better']} tasks, for its start on {v3['start_better']}.")


def study_v3_from(data: dict) -> dict:
    """The constants of :data:`STUDY_V3` from study v3's ``study.json`` (docs/lora_v3_tables.py)."""
    p, g, d = data["primary"], data["gain"], data["rise"]["mean_d"]
    return {"model": ", ".join(data["models"]), "n_tasks": data["n_rows"],
            "n_sources": data["n_sources"], "n_train": STUDY_V3["n_train"],
            "estimate": round(p["estimate"], 2), "low": round(p["low"], 2),
            "high": round(p["high"], 2), "smallest_rho": STUDY_V3["smallest_rho"],
            "gain_median": round(g["median"], 1), "gain_min": round(g["min"], 1),
            "gain_max": round(g["max"], 1), "lora_better": g["lora_better"],
            "start_better": g["start_better"],
            "rise_d": {k: round(d[k], 3) for k in ("estimate", "low", "high")},
            "rise_claimed": data["rise"]["n_claimed"]}


def rule_text(rule) -> str:
    """What the recommendation rests on, in one paragraph."""
    rule = _resolve_rule(rule)
    if rule is None:
        return ("No fitted rule is available, so nothing is recommended; run LoRA (without "
                "--no-lora) to measure the gain.")
    study_ = (f"In the LoRA study v2 (docs/lora.md section 5; {rule['n_tasks']} tasks, "
              f"{rule['n_rows']} (task, model) rows on {', '.join(rule['models'])}), ")
    errors = (f"leave-one-task-out error {rule['mae']:.1f} points, against "
              f"{rule['headroom_mae']:.1f} for headroom and {rule['mean_gain_mae']:.1f} for the "
              "mean gain")
    if not rule["beats_mean_gain"]:
        sizes = rule.get("n_train")
        at = (f", at n = {_or(sizes)} training texts per task" if sizes else "")
        return (study_ + "no predictor (NTPS, the peers or headroom) beat the mean gain of the "
                "other tasks when each task was left out (the best, "
                f"{rule['predictor']}, missed by {rule['mae']:.1f} points on average, the mean "
                f"gain by {rule['mean_gain_mae']:.1f})"
                f"{_ntps_clause(rule)}. So nothing is recommended. The study's gains{at}: "
                f"median {rule['gain_median']:+.1f} points, from {rule['gain_min']:+.1f} to "
                f"{rule['gain_max']:+.1f}. To measure the gain, run LoRA (without --no-lora).")
    line = f"gain = {rule['intercept']:+.1f} {rule['slope']:+.1f} x {rule['predictor']} points"
    if rule["predictor"] == "headroom":
        return (study_ + "no score of the frozen model (NTPS or a peer) predicted the gain "
                f"better than headroom (1 - the probe's held-out accuracy): {errors}. The "
                f"recommendation reads headroom only, {line}; NTPS is printed for "
                f"information. 'Worth it' from {WORTH_IT_POINTS:.0f} points.")
    diff = rule["difference_from_headroom"]
    return (study_ + f"{rule['predictor']} predicted the gain best: {errors}, "
            f"{-diff['estimate']:.1f} [{-diff['high']:.1f}, {-diff['low']:.1f}] points less than"
            f" headroom's. The recommendation reads {line}. 'Worth it' from "
            f"{WORTH_IT_POINTS:.0f} points.")


def _ntps_clause(rule) -> str:
    """What the study measured of Spearman(NTPS, gain), and what it could detect."""
    rho = rule.get("ntps_spearman")
    if not rho:
        return ""
    text = (f"; Spearman(NTPS, gain) was {rho['estimate']:+.2f} [{rho['low']:+.2f}, "
            f"{rho['high']:+.2f}] (p = {rho['p']:.2f})")
    if rho["low"] <= 0 <= rho["high"]:
        text += (": the study could not detect whether NTPS relates to the gain, and with "
                 f"{rule['n_rows']} rows it would have detected the paper's weakest, "
                 f"{PAPER_WEAKEST:+.2f}, with a probability of about "
                 f"{spearman_power(PAPER_WEAKEST, rule['n_rows']):.2f} (rows taken as independent)")
    return text


def _or(values) -> str:
    """``[100, 300]`` as "100 or 300"."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def rule_from_study(data: dict) -> dict:
    """The constants of :data:`RULE` from the study's ``study.json`` (docs/lora_tables.py).

    The chosen predictor, its line on every eligible row, the errors, the gains, the
    training sizes they were measured at, and NTPS's Spearman with the gain.
    """
    rule, eligible = data["rule"], [r for r in data["rows"] if r["eligible"]]
    gains = np.array([r["gain"] for r in eligible], dtype=float)
    keep = ("predictor", "intercept", "slope", "mae", "headroom_mae", "mean_gain_mae",
            "beats_headroom", "beats_mean_gain")
    diff = rule["difference_from_headroom"]
    rho = data.get("correlations", {}).get("ntps", {}).get("spearman")
    return {**{k: rule[k] for k in keep},
            "difference_from_headroom": {k: float(diff[k]) for k in ("estimate", "low", "high")},
            "n_rows": len(eligible), "n_tasks": len({r["task"] for r in eligible}),
            "models": sorted({r["model"] for r in eligible}),
            "gain_median": float(np.median(gains)), "gain_min": float(gains.min()),
            "gain_max": float(gains.max()),
            "n_train": sorted({int(r["n_train"]) for r in eligible if "n_train" in r}),
            "ntps_spearman": rho and {k: float(rho[k]) for k in ("estimate", "low", "high", "p")}}


def _resolve_rule(rule):
    return RULE if isinstance(rule, str) and rule == "bundled" else rule


def run_prescreen(model, tasks, *, run_lora=True, lora_params=None, rule="bundled",
                  embedding_params=None, max_length=128, n_permutations=30,
                  progress=True) -> Prescreen:
    """The frozen model's scores, the probe, the recommendation, and LoRA's gain, per task.

    Parameters
    ----------
    model : str
        Anything :class:`~sklearn_ntps.HFEmbeddingTransformer` takes.
    tasks : dict
        ``name -> (X_train, y_train, X_test, y_test)``.
    run_lora : bool, default=True
        False scores the frozen model and the probe only, and recommends.
    lora_params : dict, default=None
        :class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier` parameters; its defaults
        otherwise, which since the calibration of docs/lora.md section 6 are no longer the
        recipe study v3 ran (``head_init="probe"``, ``learning_rate=5e-4``,
        ``head_learning_rate=1e-4``, ``n_iter_no_change=3``).
    rule : dict, "bundled" or None, default="bundled"
        The recommendation rule; "bundled" is :data:`RULE`, the study's.
    embedding_params : dict, default=None
        :class:`~sklearn_ntps.HFEmbeddingTransformer` parameters of the scores
        and the probe.
    max_length : int, default=128
        The truncation of the scores, the probe and LoRA alike (so it is not
        in ``lora_params`` or ``embedding_params``): the gain compares them on
        the same tokens.
    n_permutations : int, default=30
        Shuffles of the labels every score is refitted on, for its chance
        level (``{score}_chance`` and ``{score}_chance_std`` in each row).
    progress : bool, default=True

    Returns
    -------
    Prescreen
        One row per task: ``ntps`` and the peers (last layer, base weights, on
        the probe's footing), ``probe_accuracy``, ``headroom``,
        ``predicted_gain`` and ``recommendation`` (None and "no recommendation"
        under the bundled rule, :func:`recommend`); with LoRA, ``lora_accuracy``,
        ``gain`` (in points), ``ntps_after`` (merged weights) and ``ntps_rise``.
    """
    from sklearn.base import clone

    from ..choice.probe import default_probe
    from ..states.embedding import HFEmbeddingTransformer

    if "max_length" in {**(lora_params or {}), **(embedding_params or {})}:
        raise ValueError("Pass max_length to run_prescreen itself: NTPS, the probe and LoRA "
                         "share it.")
    rule = _resolve_rule(rule)
    out = Prescreen(model=model, rule=rule)
    params = dict(progress=progress, max_length=max_length, **(embedding_params or {}))
    for name, (X_train, y_train, X_test, y_test) in tasks.items():
        row = {"task": name, "n_train": len(X_train), "n_test": len(X_test)}
        before = HFEmbeddingTransformer(model_name_or_path=model, output="tokens", **params)
        names = ("ntps", *score_names(prescreen=True))
        row.update(_scores(before.fit_transform(X_train), y_train, names, n_permutations))
        pooled = HFEmbeddingTransformer(model_name_or_path=model, **params).fit()
        probe = clone(default_probe()).fit(pooled.transform(X_train), y_train)
        row["probe_accuracy"] = float(probe.score(pooled.transform(X_test), y_test))
        row["headroom"] = 1.0 - row["probe_accuracy"]
        row["recommendation"], row["predicted_gain"] = recommend(row, rule)
        if run_lora:
            from .classifier import HFLoRAClassifier

            lora = HFLoRAClassifier(model_name_or_path=model, progress=progress,
                                    max_length=max_length,
                                    **(lora_params or {})).fit(X_train, y_train)
            row["lora_accuracy"] = float(lora.score(X_test, y_test))
            # Against its own start (its probe on the same texts and test texts): a
            # separately fitted probe saw other texts in another order, and differs from it.
            row["start_accuracy"] = float(np.mean(lora.predict_start(X_test) == y_test))
            row["gain"] = 100 * (row["lora_accuracy"] - row["start_accuracy"])
            after = HFEmbeddingTransformer(model_name_or_path=lora, output="tokens", **params)
            scored = _scores(after.fit_transform(X_train), y_train, ("ntps",), n_permutations)
            row["ntps_after"] = scored["ntps"]
            row["ntps_after_chance"] = scored["ntps_chance"]
            row["ntps_after_chance_std"] = scored["ntps_chance_std"]
            row["ntps_rise"] = row["ntps_after"] - row["ntps"]
            row["lora_fit_seconds"] = float(getattr(lora, "fit_time_", np.nan))
        out.rows.append(row)
    return out


def _scores(moments, y, names, n_permutations):
    """The scores of ``names`` on the probe's footing, as the study measured its predictors.

    On the probe's footing, each feature is divided by its sd over these texts.
    """
    from ..choice.protocol import fit_scores, on_probe_footing
    from ..scores.registry import default_scorers

    scorers = {n: default_scorers()[n].set_params(n_permutations=n_permutations) for n in names}
    footed, _ = on_probe_footing([moments])
    return fit_scores(scorers, footed, y, chance=True)


def _cell(value, fmt="{:.3f}"):
    return "" if value is None else fmt.format(value)


def plot_prescreen(prescreen: Prescreen) -> bytes:
    """The score the rule reads (else NTPS) against the measured gain; NTPS before and after.

    The first panel draws the study's line and the 'worth it' level only when the
    rule reads a score, and titles Spearman only from :data:`MIN_SPEARMAN_TASKS`
    tasks on. The figure is returned as PNG bytes.
    """
    from matplotlib.figure import Figure

    rows = [r for r in prescreen.rows if r.get("gain") is not None]
    rule = prescreen.rule or {}
    read = read_score(prescreen.rule)
    predictor = read or "ntps"
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    x = np.array([r[predictor] for r in rows])
    g = np.array([r["gain"] for r in rows])
    axes[0].scatter(x, g, color="tab:blue", label="these tasks")
    for r, xi, gi in zip(rows, x, g):
        axes[0].annotate(r["task"][-18:], (xi, gi), fontsize="xx-small", alpha=0.7)
    if read is not None:
        if len(rows):
            grid = (np.linspace(x.min(), x.max(), 2) if np.ptp(x) > 0
                    else x[0] + np.array([-0.05, 0.05]))
            axes[0].plot(grid, rule["intercept"] + rule["slope"] * grid, "k--", lw=1,
                         label=f"the study's line (error {rule['mae']:.1f} points)")
        axes[0].axhline(WORTH_IT_POINTS, color="tab:orange", lw=0.8, label="'worth it'")
    rho = prescreen.spearman(predictor)
    if len(rows) < MIN_SPEARMAN_TASKS:
        title = f"Spearman omitted: {len(rows)} tasks, {MIN_SPEARMAN_TASKS} needed"
    elif np.isfinite(rho["estimate"]):
        title = f"Spearman {rho['estimate']:+.2f} over {len(rows)} tasks"
    else:
        title = "Spearman undefined (tied values)"
    axes[0].set(xlabel=f"{predictor} before LoRA", ylabel="LoRA gain over the probe (points)",
                title=title)
    axes[0].legend(fontsize="small")
    before = [r["ntps"] for r in rows]
    axes[1].scatter(before, [r["ntps_after"] for r in rows], color="tab:green")
    axes[1].axline((0, 0), slope=1, color="k", lw=0.8)
    axes[1].set(xlabel="NTPS before LoRA", ylabel="NTPS after LoRA (merged weights)",
                title="above the line: NTPS rose")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"LoRA prescreening, {prescreen.model}", fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def intent_subtasks(data, *, n_groups=4, group_size=5, seed=0):
    """Disjoint groups of classes drawn at random from ``data``'s classes (sorted).

    These are the first LoRA study's sub-tasks (docs/lora.md section 1), not
    study v2's: v2 chose its groups by all-MiniLM-L6-v2's class centroids,
    greedy groups of mutually close classes (``choose_groups`` in
    docs/lora_study.py). Random groups tend to be easy: the first study's
    frozen probe scored 0.96 to 1.00 on every one.

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
