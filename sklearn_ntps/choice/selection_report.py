"""What ``sklearn-ntps select`` prints and writes, from a fitted LayerSelector.

A ranked table of (model, layer) pairs, the pick and how sure it is, as text;
the same as ``select.csv`` and ``select.json``; and ``select.png``, the score
of every layer of every model with its interval, the pick marked. Everything
is rendered in memory, so the command writes all files or none.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .._utils import csv_text, json_text
from .protocol import (
    LAYER_REGRET,
    MODEL_CHOICE,
    MODEL_CHOICE_TIED,
    NOISE_FLOOR,
    NOT_SEPARATED,
    RECOMMENDED,
    layer_ranges,
)

__all__ = ["noise_ranges", "selection_figure", "selection_files", "selection_text"]

COLUMNS = ["rank", "model", "layer", "score", "low", "high", "se", "block_mean", "chance",
           "chance_std", "z", "within_noise", "picked", "n_texts", "stopped_after"]
# Rows the printed table shows; select.csv holds them all.
SHOWN = 20


def score_name(selector) -> str:
    """The score's name as the report's columns call it."""
    scorer = selector.scorer
    if isinstance(scorer, str):
        return scorer
    if scorer is None:
        return RECOMMENDED if len(selector.scores_) == 1 else MODEL_CHOICE
    return type(scorer).__name__


def _why(selector, name) -> str:
    """Why this score, when the user did not name one."""
    if selector.scorer is not None:
        return ""
    if len(selector.scores_) == 1:
        return (f" (the default for choosing a layer: rule B of docs/validity.md, not separated "
                f"there from {', '.join(NOT_SEPARATED)})")
    others = ", ".join(t for t in MODEL_CHOICE_TIED if t != name)
    return (f" (the default for choosing among models: rule M of docs/validity.md separated no "
            f"score, so it takes the cheapest of the tied; {others} did as well there)")


def noise_ranges(selector) -> str:
    """The pairs that cannot be told apart from the pick, as layer ranges per model.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from sklearn_ntps.choice.selection_report import noise_ranges
    >>> rows = [{"model": "A", "layer": l, "within_noise": l in (3, 4, 5, 9)} for l in range(10)]
    >>> rows += [{"model": "B", "layer": 2, "within_noise": True}]
    >>> noise_ranges(SimpleNamespace(results_=rows))
    'layers 3-5 and 9 of A and layer 2 of B'
    """
    parts = []
    for model in dict.fromkeys(r["model"] for r in selector.results_):
        layers = [r["layer"] for r in selector.results_
                  if r["model"] == model and r["within_noise"]]
        if layers:
            parts.append(f"{layer_ranges(layers)} of {_short(model)}")
    return " and ".join(parts)


def noise_verdict(selector) -> str:
    """What the chance levels and the intervals leave of the pick."""
    name = score_name(selector)
    pick = _pick(selector)
    if selector.leaves_chance_ is False:
        return (f"No (model, layer) leaves its chance level on these texts: the pick's {name} is "
                f"{pick['z']:+.1f} standard deviations from its mean on shuffled labels, and on "
                f"some shuffle of the labels a pair reached {selector.chance_threshold_:+.1f}. "
                "The pick is noise on these texts; more labelled texts would help.")
    lead = "" if selector.leaves_chance_ is None else (
        f"The pick's {name} is {pick['z']:+.1f} standard deviations above its chance level, "
        f"beyond the {selector.chance_threshold_:+.1f} any pair reached on shuffled labels. ")
    within = [r for r in selector.results_ if r["within_noise"] and not r["picked"]]
    if not within:
        return lead + "Every other pair is separated from the pick by its block interval."
    ranges = noise_ranges(selector)
    return (lead + f"{ranges[:1].upper()}{ranges[1:]} cannot be told apart from the pick on these "
            f"texts ({len(within) + 1} pairs in all, the pick included).")


def _pick(selector) -> dict:
    return next(r for r in selector.results_ if r["picked"])


def margin_verdict(selector) -> str:
    """One sentence saying whether the pick is separated from the runner-up."""
    cell = selector.margin_interval_
    if selector.runner_up_ is None:
        return "Only one (model, layer) pair was scored: nothing to compare it with."
    if not np.isfinite(cell["low"]):
        return "The blocks give no interval (a score was undefined on some of them)."
    if cell["low"] > 0:
        name = score_name(selector)
        cost = LAYER_REGRET.get(name)
        worth = "" if cost is None else (
            f" In docs/validity.md the layer {name} picked was {cost[0]:.1f} accuracy points "
            f"[{cost[1]:.1f}, {cost[2]:.1f}] below the probe's best on average over 30 tasks, "
            f"{NOISE_FLOOR:.1f} of which the probe loses picking its own layer on other texts.")
        return ("The interval excludes 0: on texts like these, the score separates the pick from "
                f"the runner-up. That is a margin in {name}, not in accuracy.{worth}")
    if cell["high"] < 0:
        return ("The interval lies below 0: the runner-up scores higher (the model was picked "
                "by its mean over layers).")
    return ("The interval includes 0: the top pairs are not separated on these texts; either "
            "will do (take the cheaper model), or add texts to tell them apart.")


def selection_text(selector, *, source="", n_classes=None) -> str:
    """The table and the verdict that ``sklearn-ntps select`` prints."""
    name, n_blocks = score_name(selector), len(selector.blocks_)
    n_texts = sum(b.size for b in selector.blocks_)
    why = _why(selector, name)
    classes = f", {n_classes} classes" if n_classes else ""
    how = {"best-layer": "its best layer's score", "layer-mean": "the mean over its layers"}
    lines = [f"{name}{why} on {n_texts} texts{classes}{f' from {source}' if source else ''}: "
             f"{len(selector.scores_)} model(s), {len(selector.results_)} (model, layer) pairs; "
             f"a model is picked by {how[selector.aggregate]} ({selector.aggregate}).",
             f"95% intervals from {n_blocks} disjoint blocks of the texts (Student's t, "
             f"{n_blocks - 1} df): they are over texts, not over tasks.", ""]
    width = max(len("model"), *(len(r["model"][-40:]) for r in selector.results_))
    lines.append(f"{'rank':>4}  {'model':<{width}}  {'layer':>5}  {name[:9]:>9}  "
                 f"{'95% interval':<20}  {'chance +- sd':<18}  {'z':>6}  vs pick")
    best = selector.best_score_
    for r in selector.results_[:SHOWN]:
        gap = "(pick)" if r["picked"] else f"{r['score'] - best:+.4f}"
        mark = "  ~ pick" if r["within_noise"] and not r["picked"] else ""
        if r.get("stopped_after") is not None:
            gap = f"stopped after round {r['stopped_after']}, on {r['n_texts']} texts"
        lines.append(f"{r['rank']:>4}  {r['model'][-40:]:<{width}}  {r['layer']:>5}  "
                     f"{r['score']:>9.4f}  {_interval(r):<20}  {_chance(r):<18}  "
                     f"{r['z']:>+6.1f}  {gap}{mark}")
    if len(selector.results_) > SHOWN:
        lines.append(f"  ... {len(selector.results_) - SHOWN} more pairs in select.csv")
    lines += ["", f"Pick: {_pick(selector)['model']}, layer {selector.best_layer_} "
                  f"({name} {best:.4f})."]
    if selector.runner_up_ is not None:
        model, layer = selector.runner_up_
        lines.append(f"Margin over the runner-up ({model}, layer {layer}): "
                     f"{selector.margin_:+.4f}, 95% interval "
                     f"{_interval(selector.margin_interval_, sign='+')}.")
    lines.append(margin_verdict(selector))
    lines.append(noise_verdict(selector))
    if racing_verdict(selector):
        lines.append(racing_verdict(selector))
    lines.append("z: the score's distance from its chance level (its mean over shuffles of the "
                 "labels) in standard deviations; ~ pick: not told apart from the pick "
                 "(docs/selection.md).")
    return "\n".join(lines)


def racing_verdict(selector) -> str:
    """What racing stopped, and the forward-pass work it saved; empty when it stopped nothing."""
    racing = getattr(selector, "racing_", None)
    if not racing or not racing["stopped"]:
        return ""
    saved = 1 - racing["block_passes"] / racing["block_passes_without_racing"]
    return (f"Racing stopped {racing['stopped']} of {racing['pairs']} pairs, separated below the "
            f"leader on the texts read so far and extrapolated to all of them (docs/selection.md); "
            f"their scores are on fewer texts, and a score moves with the number of texts. "
            f"Blocks read by a pair: {racing['block_passes']} of "
            f"{racing['block_passes_without_racing']} ({saved:.0%} saved; --no-racing reads all).")


def _chance(row) -> str:
    if not np.isfinite(row.get("chance", np.nan)):
        return "n/a"
    return f"{row['chance']:.4f} +- {row['chance_std']:.4f}"


def _interval(cell, sign=""):
    if not np.isfinite(cell.get("low", np.nan)):
        return "n/a"
    return f"[{cell['low']:{sign}.4f}, {cell['high']:{sign}.4f}]"


def _short(model) -> str:
    """A model's folder or file name, for a plot's labels (select.csv has the whole path)."""
    return Path(model).name if "/" in model or "\\" in model else model


def selection_json(selector, *, source="", n_classes=None) -> str:
    cell = selector.margin_interval_
    runner = selector.runner_up_
    data = {
        "data": source, "n_texts": int(sum(b.size for b in selector.blocks_)),
        "n_classes": n_classes, "score": score_name(selector), "aggregate": selector.aggregate,
        "n_blocks": len(selector.blocks_), "models": list(selector.scores_),
        "dtype": selector.embedding_.dtype_,
        "pick": {"model": _pick(selector)["model"], "layer": selector.best_layer_,
                 "score": selector.best_score_},
        "runner_up": None if runner is None else {"model": runner[0], "layer": runner[1]},
        "margin": {"value": selector.margin_,
                   **{k: cell[k] for k in ("se", "low", "high", "block_mean")},
                   "separated": bool(cell["low"] > 0),
                   "blocks": selector.margin_blocks_.tolist()},
        "verdict": margin_verdict(selector),
        "leaves_chance": selector.leaves_chance_,
        "chance_threshold": selector.chance_threshold_,
        "within_noise": [{"model": r["model"], "layer": r["layer"]} for r in selector.results_
                         if r["within_noise"]],
        "noise_verdict": noise_verdict(selector),
        "racing": getattr(selector, "racing_", None),
        "rows": [{k: r[k] for k in COLUMNS} for r in selector.results_],
    }
    return json_text(data)


def selection_files(selector, *, plot=True, source="", n_classes=None) -> dict:
    """The files as ``{file name: contents}``, all rendered before any is written.

    ``select.csv``, ``select.json`` and, with ``plot``, ``select.png``.
    """
    files = {"select.csv": csv_text(COLUMNS, selector.results_),
             "select.json": selection_json(selector, source=source, n_classes=n_classes)}
    if plot:
        buffer = io.BytesIO()
        selection_figure(selector).savefig(buffer, format="png", dpi=90)
        files["select.png"] = buffer.getvalue()
    return files


def selection_figure(selector):
    """Every model's score per layer with its 95% band, the pick starred, and the top pairs.

    Beside the per-layer lines, the top pairs are ranked with their intervals. matplotlib's
    object API: a notebook's state is left alone.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    lines, ranks = fig.subplots(1, 2, width_ratios=[3, 2])
    name = score_name(selector)
    by_pair = {(r["model"], r["layer"]): r for r in selector.results_}
    for i, (model, scores) in enumerate(selector.scores_.items()):
        layers = selector.layers_[model]
        cells = [by_pair[model, layer] for layer in layers]
        color = f"C{i % 10}"
        lines.plot(layers, scores, "-", color=color, lw=1.6, label=_short(model))
        # Filled: read every block; hollow: stopped by racing, scored on fewer texts.
        full = [c.get("stopped_after") is None for c in cells]
        for keep, style in ((True, {"mfc": color}), (False, {"mfc": "white"})):
            at = [k for k, f in enumerate(full) if f == keep]
            if at:
                lines.plot([layers[k] for k in at], [scores[k] for k in at], "o", ms=4,
                           color=color, **style)
        lines.fill_between(layers, [c["low"] for c in cells], [c["high"] for c in cells],
                           color=color, alpha=0.18, lw=0)
        chance = [c["chance"] for c in cells]
        if np.isfinite(chance).any():
            lines.plot(layers, chance, ":", color=color, lw=1.2,
                       label=f"{_short(model)}, shuffled labels (chance)")
    pick = (_pick(selector)["model"], selector.best_layer_)
    lines.plot(pick[1], selector.best_score_, "*", color="k", ms=16, zorder=5,
               label=f"pick: layer {pick[1]} of {_short(pick[0])}")
    if selector.runner_up_ is not None:
        lines.plot(selector.runner_up_[1], by_pair[selector.runner_up_]["score"], "o", ms=11,
                   mfc="none", mec="k", zorder=5, label="runner-up")
    lines.set(xlabel="layer (0 = embeddings)", ylabel=f"{name} (higher is better)",
              title=f"{name} of every layer; bands: 95% intervals over "
                    f"{len(selector.blocks_)} blocks of texts\n(hollow: stopped by racing, "
                    "scored on fewer texts)")
    lines.grid(alpha=0.3)
    lines.legend(fontsize="small")
    lines.xaxis.get_major_locator().set_params(integer=True)
    top = selector.results_[:12]
    y = np.arange(len(top))
    for i, r in zip(y, top):
        # The pick, the pairs it cannot be told apart from, and the rest.
        color = "tab:orange" if r["picked"] else "tab:olive" if r["within_noise"] else \
            "0.6" if r.get("stopped_after") is not None else "tab:blue"
        if np.isfinite(r["low"]):
            ranks.plot([r["low"], r["high"]], [i, i], color=color, lw=2.5, alpha=0.7)
        ranks.plot(r["score"], i, "o", color=color, ms=7)
        if np.isfinite(r["chance"]):
            ranks.plot(r["chance"], i, "x", color="0.4", ms=6)
    ranks.axvline(selector.best_score_, color="tab:orange", lw=0.8, ls="--")
    ranks.set_yticks(y, [f"{_short(r['model'])} · layer {r['layer']}"
                         + (f" (stopped, {r['n_texts']} texts)"
                            if r.get("stopped_after") is not None else "") for r in top],
                     fontsize="small")
    ranks.invert_yaxis()
    ranks.grid(alpha=0.3, axis="x")
    cell = selector.margin_interval_
    verdict = "separated" if cell["low"] > 0 else "not separated"
    ranks.set(xlabel=f"{name} (x: chance level)",
              title=f"top pairs (orange: pick; olive: not told apart; grey: stopped)\n"
                    f"margin over the runner-up {selector.margin_:+.3g}: {verdict}")
    ranks.title.set_fontsize("small")
    lines.title.set_fontsize("medium")
    return fig
