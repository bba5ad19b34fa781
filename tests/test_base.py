"""The scorer contract every score keeps (sklearn_ntps.scores.base)."""

import numpy as np
import pytest

from sklearn_ntps import FunctionScorer, compute_moments
from sklearn_ntps.scores.base import pooled_input

from builders import make_texts


def mean_gap(X, codes):
    """The distance between the two classes' mean first feature."""
    return float(abs(X[codes == 1, 0].mean() - X[codes == 0, 0].mean()))


def test_every_input_form_reads_the_same_pooled_features():
    X, y = make_texts(n_texts=30, n_features=4, seed=3)
    y = np.asarray(y) % 2
    pooled = np.stack([x.mean(axis=0) for x in X])
    expected = mean_gap(pooled, y)
    for form in (X, compute_moments(X), pooled):
        scorer = FunctionScorer(score_func=mean_gap, n_permutations=0).fit(form, y)
        assert scorer.score_ == pytest.approx(expected, rel=1e-12)
        assert scorer.n_features_in_ == 4
        np.testing.assert_array_equal(scorer.classes_, [0, 1])
    np.testing.assert_allclose(pooled_input(X), pooled)


def test_score_reads_the_new_data_and_labels_of_any_type():
    train = np.array([[0.0], [1.0], [4.0], [5.0]])
    scorer = FunctionScorer(score_func=mean_gap, n_permutations=0).fit(train, ["a", "a", "b", "b"])
    assert scorer.score_ == 4.0
    assert scorer.score(np.array([[0.0], [10.0]]), ["a", "b"]) == 10.0


def test_the_chance_level_is_the_function_on_shuffled_labels():
    X = np.array([[0.0], [1.0], [4.0], [5.0]])
    y = np.array([0, 0, 1, 1])
    scorer = FunctionScorer(score_func=mean_gap, n_permutations=5, random_state=1).fit(X, y)
    from sklearn_ntps.scores.chance import label_permutations

    by_hand = [mean_gap(X, codes) for codes in label_permutations(y, 5, 1)]
    np.testing.assert_allclose(scorer.chance_scores_, by_hand)
    assert scorer.chance_ == pytest.approx(np.mean(by_hand))


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((4, 1)), None, "FunctionScorer requires y to be passed"),
    (np.zeros((4, 1)), [0, 0, 1], "inconsistent numbers of samples"),
    (np.zeros((4, 1)), [0, 0, 0, 0], "a single class"),
    (np.zeros((4, 1)), [0.5, 1.5, 0.5, 2.5], "Unknown label type"),
    (np.full((4, 1), np.inf), [0, 0, 1, 1], "NaN or infinity"),
])
def test_bad_input_is_refused_once_with_one_message(X, y, message):
    with pytest.raises(ValueError, match=message):
        FunctionScorer(score_func=mean_gap).fit(X, y)


def test_new_data_must_have_the_fitted_number_of_features():
    scorer = FunctionScorer(score_func=mean_gap, n_permutations=0)
    scorer.fit(np.arange(8.0).reshape(4, 2), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="X has 3 features, but FunctionScorer is expecting 2"):
        scorer.score(np.zeros((4, 3)), [0, 0, 1, 1])
