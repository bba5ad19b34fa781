"""The example scripts run (with small settings) and say what they claim."""

import runpy
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from sklearn_ntps import NTPSScorer, NTPSSubspaceProbe
from sklearn_ntps.datasets import load_sms_spam

from builders import cv_by_hand

EXAMPLES = Path(__file__).parent.parent / "examples"


def example(name):
    return runpy.run_path(str(EXAMPLES / name))


def test_synthetic_example(capsys):
    runpy.run_path(str(EXAMPLES / "synthetic_ntps.py"), run_name="__main__")
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert float(rows["predictable"][1]) > 0.9 > 0.1 > float(rows["unpredictable"][1])
    assert float(rows["unpredictable"][2]) > 0.9  # a probe on all features still finds the class


def test_pipeline_cross_val(tiny_llama, ntps_cache, capsys):
    scores = example("pipeline_cross_val.py")["main"](model=tiny_llama, n_texts=60, n_components=4)
    # Each fold's NTPS of the last layer: fitted on the training texts, scoring the held-out ones.
    X, y = load_sms_spam(split="train", n_samples=60, return_X_y=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    by_hand = cv_by_hand(tiny_llama, X, y, folds, NTPSScorer(n_components=4), layer=-1)
    np.testing.assert_allclose(scores, by_hand, rtol=0, atol=1e-12)
    assert "3 folds" in capsys.readouterr().out


def test_grid_search_layers(tiny_llama, ntps_cache, capsys):
    grid = example("grid_search_layers.py")["main"](model=tiny_llama, n_texts=308, n_components=4)
    assert len(grid.cv_results_["mean_test_score"]) == 3
    assert "best layers" in capsys.readouterr().out


def test_grid_search_models(tiny_llama, ntps_cache, tmp_path, capsys):
    from builders import make_tiny_llama

    other = make_tiny_llama(tmp_path / "other", hidden_size=8, seed=1)
    grid = example("grid_search_models.py")["main"](models=(tiny_llama, other), n_texts=60,
                                                    n_components=0.5)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert capsys.readouterr().out.count("probe accuracy") == 2


def test_ntps_vs_probe(tiny_llama, ntps_cache, capsys):
    report = example("ntps_vs_probe.py")["main"](model=tiny_llama, n_texts=231, n_replicates=2)
    assert len(report.rows) == 2 * 3 * 2  # data sets x layers x replicates
    assert "Spearman" in capsys.readouterr().out


@pytest.mark.slow
def test_grid_search_models_on_the_real_models(ntps_cache, capsys):
    from sklearn_ntps.states.models import resolve_model

    try:
        resolve_model("SmolLM2-135M")
        resolve_model("all-MiniLM-L6-v2")
    except (ValueError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    grid = example("grid_search_models.py")["main"](n_texts=40)
    # Each model's probe accuracy in its NTPS subspace, over the example's two folds by hand
    # (the statistics come from the cache the grid filled: no model runs again).
    X, y = load_sms_spam(split="train", n_samples=40, return_X_y=True)
    folds = StratifiedKFold(2, shuffle=True, random_state=0)
    for model, mean in zip(("SmolLM2-135M", "all-MiniLM-L6-v2"),
                           grid.cv_results_["mean_test_score"]):
        by_hand = cv_by_hand(model, X, y, folds, NTPSSubspaceProbe(n_components=0.25))
        assert mean == pytest.approx(np.mean(by_hand), abs=1e-12), model
