"""The registry of scores: one list that the report, select, the CLI and the prescreen read."""

import csv

import numpy as np
import pytest

from sklearn_ntps import FunctionScorer, register_score
from sklearn_ntps.scores.registry import (
    default_scorers,
    registered_scores,
    score_names,
    unregister_score,
)


def share_of_first_class(features, codes):
    """A toy score with a known answer: the share of texts in the first class."""
    return float(np.mean(codes == 0))


@pytest.fixture
def toy():
    entry = register_score("toy", share_of_first_class, label="toy share")
    yield entry
    unregister_score("toy")


def test_the_builtin_scores_and_their_order():
    assert score_names() == ["ntps", "ntps_paper", "ntps_paper_exact", "logme", "hscore",
                             "transrate", "rankme", "knn", "ridge_loo"]
    assert score_names(prescreen=True) == ["logme", "knn", "ridge_loo"]
    assert list(default_scorers()) == score_names()


def test_default_scorers_are_fresh_clones():
    a, b = default_scorers()["logme"], default_scorers()["logme"]
    assert a is not b and a is not registered_scores()["logme"].scorer


def test_a_function_is_wrapped_and_scored_with_its_chance_level(toy):
    assert isinstance(toy.scorer, FunctionScorer) and toy.label == "toy share"
    X = np.arange(12.0).reshape(6, 2)
    fitted = default_scorers()["toy"].fit(X, [0, 0, 1, 1, 1, 1])
    assert fitted.score_ == pytest.approx(1 / 3)
    # A shuffle keeps the class counts, so this score's chance level is itself.
    assert fitted.chance_ == pytest.approx(1 / 3)
    assert fitted.chance_std_ == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("name, error, message", [
    ("logme", ValueError, "already registered"),
    ("not a name", ValueError, "identifier"),
])
def test_bad_registrations_are_refused(name, error, message):
    with pytest.raises(error, match=message):
        register_score(name, share_of_first_class)


def test_a_builtin_score_stays_and_a_non_scorer_is_refused():
    with pytest.raises(ValueError, match="built-in"):
        unregister_score("ntps")
    with pytest.raises(TypeError, match="f\\(features, codes\\)"):
        register_score("number", 3)
    assert "number" not in score_names()


def test_a_registered_score_is_a_column_of_the_report(toy, tiny_llama, ntps_cache):
    from sklearn_ntps.evidence.report import run_report

    y = [i % 3 for i in range(60)]
    texts = [f"card film {'card ' * (i % 5)}" for i in range(60)]
    rep = run_report([tiny_llama], {"toy": (texts, y)}, progress=False, n_blocks=5,
                     n_test_blocks=1, embedding_params={"batch_size": 8})
    assert rep.scores[-1] == "toy"
    # Four of five stratified blocks train: 16 texts of each of 3 classes.
    assert [r["toy"] for r in rep.rows] == pytest.approx([1 / 3] * len(rep.rows))


def test_a_registered_score_is_a_choice_of_select_and_the_cli(toy, tiny_llama, ntps_cache,
                                                               tmp_path, capsys):
    from sklearn_ntps import cli

    with pytest.raises(SystemExit):
        cli.main(["select", "--help"])
    assert "toy" in capsys.readouterr().out
    data = tmp_path / "d.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((f"card film {'card ' * (i % 4)}", "ab"[i % 4 == 0]) for i in range(40))
    out = tmp_path / "out"
    assert cli.main(["select", "--data", str(data), "--model", tiny_llama, "--score", "toy",
                     "--n-blocks", "2", "--no-plot", "--no-progress",
                     "--output-dir", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "select.csv")))
    # Every layer reads the same labels: 30 of 40 texts are in class "a", the first.
    assert len(rows) == 3 and {float(r["score"]) for r in rows} == {0.75}
