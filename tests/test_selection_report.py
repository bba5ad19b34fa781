"""sklearn_ntps.choice.selection_report: what ``sklearn-ntps select`` prints and writes, from a
fitted selector's attributes. A selector written by hand (no model runs), so every number and
sentence of the report is known."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from sklearn_ntps.choice import protocol
from sklearn_ntps.choice.selection_report import (
    COLUMNS,
    SHOWN,
    margin_verdict,
    noise_ranges,
    noise_verdict,
    score_name,
    selection_files,
    selection_json,
    selection_text,
)

NAN = float("nan")


def row(rank, model, layer, score, *, low=None, chance=0.1, z=10.0, within=False, picked=False,
        stopped=None):
    low = round(score - 0.05, 2) if low is None else low
    return {"rank": rank, "model": model, "layer": layer, "score": score, "low": low,
            "high": round(score + 0.05, 2), "se": 0.02, "block_mean": score, "chance": chance,
            "chance_std": 0.05, "z": z, "within_noise": within, "picked": picked,
            "n_texts": 50 if stopped is None else 20, "stopped_after": stopped}


def selector(**changes):
    """Two models, five (model, layer) pairs ranked; the pick and the runner-up not separated."""
    fitted = SimpleNamespace(
        scorer="logme", aggregate="best-layer",
        scores_={"org/A": [0.4, 0.88, 0.9], "B": [0.5, 0.7]},
        layers_={"org/A": [0, 1, 2], "B": [0, 1]},
        results_=[row(1, "org/A", 2, 0.9, z=16.0, within=True, picked=True),
                  row(2, "org/A", 1, 0.88, z=15.6, within=True),
                  row(3, "B", 1, 0.7),
                  row(4, "B", 0, 0.5, chance=NAN, z=NAN),
                  row(5, "org/A", 0, 0.4, low=NAN)],
        blocks_=[np.arange(10 * i, 10 * i + 10) for i in range(5)],
        best_score_=0.9, best_layer_=2, runner_up_=("org/A", 1), margin_=0.02,
        margin_interval_={"se": 0.01, "low": -0.005, "high": 0.045, "block_mean": 0.02},
        margin_blocks_=np.array([0.01, 0.03, 0.02, 0.0, 0.04]),
        embedding_=SimpleNamespace(dtype_="float32"),
        leaves_chance_=True, chance_threshold_=3.5)
    for name, value in changes.items():
        setattr(fitted, name, value)
    return fitted


def test_score_name():
    assert score_name(selector()) == "logme"
    assert score_name(selector(scorer=None)) == protocol.MODEL_CHOICE  # two models
    assert score_name(selector(scorer=None, scores_={"B": [0.5, 0.7]})) == protocol.RECOMMENDED
    assert score_name(selector(scorer=SimpleNamespace())) == "SimpleNamespace"


def test_noise_ranges_as_layer_runs_per_model():
    assert noise_ranges(selector()) == "layers 1-2 of A"  # a model's folder name
    rows = [{"model": "A", "layer": i, "within_noise": i in (3, 4, 5, 9)} for i in range(10)]
    rows.append({"model": "B", "layer": 2, "within_noise": True})
    assert noise_ranges(SimpleNamespace(results_=rows)) == "layers 3-5 and 9 of A and layer 2 of B"


def test_margin_verdicts():
    assert margin_verdict(selector()).startswith("The interval includes 0: the top pairs are not "
                                                 "separated on these texts")
    cell = {"se": 0.01, "low": 0.01, "high": 0.03, "block_mean": 0.02}
    cost = protocol.LAYER_REGRET["logme"]
    assert margin_verdict(selector(margin_interval_=cell)) == (
        "The interval excludes 0: on texts like these, the score separates the pick from the "
        "runner-up. That is a margin in logme, not in accuracy. In docs/validity.md the layer "
        f"logme picked was {cost[0]:.1f} accuracy points [{cost[1]:.1f}, {cost[2]:.1f}] below "
        "the probe's best on average over 30 tasks, "
        f"{protocol.NOISE_FLOOR:.1f} of which the probe loses picking its own layer on other "
        "texts.")
    assert margin_verdict(selector(scorer="custom", margin_interval_=cell)).endswith(
        "That is a margin in custom, not in accuracy.")
    below = {"se": 0.01, "low": -0.03, "high": -0.01, "block_mean": -0.02}
    assert margin_verdict(selector(margin_interval_=below)).startswith(
        "The interval lies below 0: the runner-up scores higher")
    undefined = {"se": NAN, "low": NAN, "high": NAN, "block_mean": NAN}
    assert margin_verdict(selector(margin_interval_=undefined)) == (
        "The blocks give no interval (a score was undefined on some of them).")
    assert margin_verdict(selector(runner_up_=None)) == (
        "Only one (model, layer) pair was scored: nothing to compare it with.")


def test_noise_verdicts():
    assert noise_verdict(selector()) == (
        "The pick's logme is +16.0 standard deviations above its chance level, beyond the +3.5 "
        "any pair reached on shuffled labels. Layers 1-2 of A cannot be told apart from the pick "
        "on these texts (2 pairs in all, the pick included).")
    alone = selector(leaves_chance_=None)
    alone.results_[1]["within_noise"] = False
    assert noise_verdict(alone) == ("Every other pair is separated from the pick by its block "
                                    "interval.")
    assert noise_verdict(selector(leaves_chance_=False)) == (
        "No (model, layer) leaves its chance level on these texts: the pick's logme is +16.0 "
        "standard deviations from its mean on shuffled labels, and on some shuffle of the labels "
        "a pair reached +3.5. The pick is noise on these texts; more labelled texts would help.")


def test_selection_text_line_by_line():
    lines = selection_text(selector(), source="my.csv", n_classes=3).splitlines()
    assert lines[0] == ("logme on 50 texts, 3 classes from my.csv: 2 model(s), 5 (model, layer) "
                        "pairs; a model is picked by its best layer's score (best-layer).")
    assert lines[1] == ("95% intervals from 5 disjoint blocks of the texts (Student's t, 4 df): "
                        "they are over texts, not over tasks.")
    assert lines[2] == ""
    # The columns: rank 4 wide, model as wide as the longest name (5), layer 5, score 9,
    # interval 20, chance 18, z 6, two spaces between.
    assert lines[3] == ("rank  model  layer      logme  95% interval          chance +- sd        "
                        "     z  vs pick")
    assert lines[4] == ("   1  org/A      2     0.9000  [0.8500, 0.9500]      0.1000 +- 0.0500     "
                        "+16.0  (pick)")
    assert lines[5] == ("   2  org/A      1     0.8800  [0.8300, 0.9300]      0.1000 +- 0.0500     "
                        "+15.6  -0.0200  ~ pick")
    assert lines[7] == ("   4  B          0     0.5000  [0.4500, 0.5500]      n/a                 "
                        "  +nan  -0.4000")
    assert lines[8] == ("   5  org/A      0     0.4000  n/a                   0.1000 +- 0.0500     "
                        "+10.0  -0.5000")
    assert lines[9:12] == [
        "", "Pick: org/A, layer 2 (logme 0.9000).",
        "Margin over the runner-up (org/A, layer 1): +0.0200, 95% interval [-0.0050, +0.0450]."]
    assert lines[12] == margin_verdict(selector()) and lines[13] == noise_verdict(selector())
    assert lines[14].startswith("z: the score's distance from its chance level")
    assert len(lines) == 15


def test_selection_text_shows_the_top_rows_and_says_why_its_default():
    many = selector(results_=[row(i + 1, "B", i, 1 - i / 100, picked=i == 0)
                              for i in range(SHOWN + 3)], scores_={"B": []})
    lines = selection_text(many).splitlines()
    assert "  ... 3 more pairs in select.csv" in lines
    assert sum(line.startswith("  ") and " B " in line for line in lines) == SHOWN
    default = selection_text(selector(scorer=None, scores_={"B": [0.5, 0.7]}))
    assert default.startswith(f"{protocol.RECOMMENDED} (the default for choosing a layer: rule B "
                              f"of docs/validity.md, not separated there from "
                              f"{', '.join(protocol.NOT_SEPARATED)}) on 50 texts: 1 model(s)")


def test_selection_json_and_csv():
    files = selection_files(selector(), plot=False, source="my.csv", n_classes=3)
    assert set(files) == {"select.csv", "select.json"}
    csv_lines = files["select.csv"].splitlines()
    assert csv_lines[0] == ",".join(COLUMNS) and len(csv_lines) == 6
    assert csv_lines[1] == "1,org/A,2,0.9,0.85,0.95,0.02,0.9,0.1,0.05,16.0,True,True,50,"
    data = json.loads(files["select.json"])
    assert data == json.loads(selection_json(selector(), source="my.csv", n_classes=3))
    assert (data["data"], data["n_texts"], data["n_classes"], data["n_blocks"]) == (
        "my.csv", 50, 3, 5)
    assert (data["score"], data["aggregate"], data["models"]) == ("logme", "best-layer",
                                                                 ["org/A", "B"])
    assert data["pick"] == {"model": "org/A", "layer": 2, "score": 0.9}
    assert data["runner_up"] == {"model": "org/A", "layer": 1}
    assert data["margin"] == {"value": 0.02, "se": 0.01, "low": -0.005, "high": 0.045,
                              "block_mean": 0.02, "separated": False,
                              "blocks": [0.01, 0.03, 0.02, 0.0, 0.04]}
    assert data["within_noise"] == [{"model": "org/A", "layer": 2}, {"model": "org/A", "layer": 1}]
    assert data["rows"][3]["chance"] is None and data["rows"][4]["low"] is None  # NaN: null
    assert [r["rank"] for r in data["rows"]] == [1, 2, 3, 4, 5]
    assert data["verdict"] == margin_verdict(selector())
    assert (data["leaves_chance"], data["chance_threshold"]) == (True, 3.5)
    assert json.loads(selection_json(selector(runner_up_=None)))["runner_up"] is None


def test_the_figure_is_a_png():
    pytest.importorskip("matplotlib")
    png = selection_files(selector(), plot=True)["select.png"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_stopped_pair_and_what_racing_saved():
    from sklearn_ntps.choice.selection_report import racing_verdict

    rows = [row(1, "org/A", 2, 0.9, within=True, picked=True), row(2, "B", 0, 0.3, stopped=1)]
    fitted = selector(results_=rows, racing_={"pairs": 2, "stopped": 1, "rounds": [1],
                                              "block_passes": 7,
                                              "block_passes_without_racing": 10})
    lines = selection_text(fitted).splitlines()
    assert any(line.endswith("stopped after round 1, on 20 texts") for line in lines)
    assert racing_verdict(fitted) in lines
    assert "Blocks read by a pair: 7 of 10 (30% saved" in racing_verdict(fitted)
    assert racing_verdict(selector()) == ""  # nothing stopped, or no racing at all
    assert json.loads(selection_json(fitted))["racing"]["stopped"] == 1
