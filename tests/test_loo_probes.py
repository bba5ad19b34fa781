"""Known-answer tests of the leave-one-out probes (sklearn_ntps.scores.loo_probes)."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier, RidgeClassifierCV
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from sklearn_ntps.scores.loo_probes import _ridge_loo, knn_accuracy, ridge_loo_accuracy

N, K, D = 600, 3, 5


def labels(n=N, k=K, seed=0):
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def noise_features(n=N, d=D, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d))


ALPHAS = np.logspace(-3, 3, 13)


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_matches_sklearn_leave_one_out(k, n_classes):
    # Continuous random features: no ties in distance; ties between classes do
    # occur (k = 3 or 5 over 5 classes), and both break them towards the smallest class.
    rng = np.random.default_rng(10 + k)
    X = rng.normal(size=(60, 4)) + 3.0
    y = labels(60, n_classes, seed=k)
    expected = cross_val_score(KNeighborsClassifier(n_neighbors=k), X, y, cv=LeaveOneOut()).mean()
    assert knn_accuracy(X, y, n_neighbors=k) == pytest.approx(expected, abs=1e-12)


def test_knn_in_blocks_of_rows(monkeypatch):
    from sklearn_ntps.scores import loo_probes

    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(50, 3)), labels(50, 4)
    whole = knn_accuracy(X, y, n_neighbors=4)
    monkeypatch.setattr(loo_probes, "_KNN_BLOCK_ENTRIES", 7 * 50)  # blocks of 7 rows, and 1
    assert knn_accuracy(X, y, n_neighbors=4) == whole
    monkeypatch.setattr(loo_probes, "_KNN_BLOCK_ENTRIES", 1)  # one row at a time
    assert knn_accuracy(X, y, n_neighbors=4) == whole


def test_knn_class_tie_goes_to_the_smallest_class():
    # k = n - 1: each sample's neighbours are all the others.
    X = np.array([[0.0], [1.0], [3.0]])
    # 0 and 1 each see one "a" and one "b": tie, "a" (the first label) wins.
    # 2 sees two "a": wrong.
    assert knn_accuracy(X, ["a", "a", "b"], n_neighbors=2) == pytest.approx(2 / 3)
    # The same geometry with the names swapped: the ties now go to the wrong class.
    assert knn_accuracy(X, ["b", "b", "a"], n_neighbors=2) == 0.0
    # Three classes, one vote each for 0 and 3: class 0 wins; 1 and 2 see two 0s.
    X4 = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert knn_accuracy(X4, [0, 1, 2, 0], n_neighbors=3) == 0.5
    assert knn_accuracy(X4, [2, 1, 0, 2], n_neighbors=3) == 0.0
    for X_, y_ in ((X, ["a", "a", "b"]), (X4, [0, 1, 2, 0]), (X4, [2, 1, 0, 2])):
        assert knn_accuracy(X_, y_, n_neighbors=len(y_) - 1) == cross_val_score(
            KNeighborsClassifier(n_neighbors=len(y_) - 1), X_, y_, cv=LeaveOneOut()).mean()


def test_knn_distance_tie_goes_to_the_first_sample():
    # Sample 0 has two neighbours at distance 1; k = 1 takes the first of them.
    assert knn_accuracy([[0.0], [-1.0], [1.0]], [0, 0, 1], n_neighbors=1) == pytest.approx(2 / 3)
    assert knn_accuracy([[0.0], [1.0], [-1.0]], [0, 1, 0], n_neighbors=1) == pytest.approx(1 / 3)


def test_knn_excludes_only_the_sample_itself():
    # An exact duplicate is a neighbour at distance 0 (it is another sample).
    X = np.array([[0.0], [0.0], [5.0], [5.1]])
    assert knn_accuracy(X, [0, 0, 1, 1], n_neighbors=1) == 1.0


@pytest.mark.parametrize("bad, match", [(0, "n_neighbors"), (-1, "n_neighbors"),
                                        (1.5, "n_neighbors"), (True, "n_neighbors"),
                                        ("3", "n_neighbors"), (6, "below n_samples=6"),
                                        (7, "below n_samples=6")])
def test_knn_rejects_bad_n_neighbors(bad, match):
    with pytest.raises(ValueError, match=match):
        knn_accuracy(noise_features(6, 2), labels(6, 2), n_neighbors=bad)


def test_knn_largest_n_neighbors():
    # k = n - 1: every sample gets the majority of the others.
    y = np.array([0, 0, 0, 1, 1])
    # The 0s see two 0s and two 1s (tie: 0); the 1s see three 0s.
    assert knn_accuracy(noise_features(5, 2), y, n_neighbors=4) == pytest.approx(3 / 5)


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("n, d", [(40, 5), (40, 60)])
def test_ridge_matches_ridge_classifier_cv_and_brute_force(n, d, n_classes):
    y = labels(n, n_classes, seed=d)
    # Off-centre on purpose: the intercept is not penalised.
    X = noise_features(n, d, seed=12) + 0.8 * np.eye(n_classes, d)[y] + 2.0
    accuracy, alpha = _ridge_loo(X, y, ALPHAS)
    assert alpha == pytest.approx(RidgeClassifierCV(alphas=ALPHAS).fit(X, y).alpha_, rel=1e-12)
    assert accuracy == pytest.approx(brute_force_ridge_loo(X, y, alpha), abs=1e-12)
    assert ridge_loo_accuracy(X, y, alphas=ALPHAS) == accuracy
    # The interpolating regime (n < d, alpha small against s^2) keeps its accuracy.
    assert ridge_loo_accuracy(X, y, alphas=[1e-3]) == pytest.approx(
        brute_force_ridge_loo(X, y, 1e-3), abs=1e-12)


def test_ridge_alpha_is_the_first_of_the_smallest_loo_error():
    y = labels(40, 2)
    X = noise_features(40, 5) + np.eye(2, 5)[y]
    _, alpha = _ridge_loo(X, y, [10.0, 10.0, 1e-3])
    assert alpha == RidgeClassifierCV(alphas=[10.0, 10.0, 1e-3]).fit(X, y).alpha_


def test_ridge_on_constant_features_is_the_intercept():
    # Leave-one-out of the intercept alone predicts the majority of the others:
    # on alternating labels, always the other class.
    y = np.arange(10) % 2
    assert ridge_loo_accuracy(np.zeros((10, 3)), y) == 0.0
    assert brute_force_ridge_loo(np.zeros((10, 3)), y, 1.0) == 0.0


@pytest.mark.parametrize("bad", [[], [0.0], [1.0, -1.0], [np.nan], [np.inf], "1", None,
                                 object()])
def test_ridge_rejects_bad_alphas(bad):
    with pytest.raises(ValueError, match="alphas"):
        ridge_loo_accuracy(noise_features(10, 2), labels(10, 2), alphas=bad)


def brute_force_ridge_loo(X, y, alpha):
    """Refit RidgeClassifier n times, each time without one sample."""
    n = len(y)
    hits = [RidgeClassifier(alpha=alpha).fit(X[np.arange(n) != i], y[np.arange(n) != i])
            .predict(X[i:i + 1])[0] == y[i] for i in range(n)]
    return np.mean(hits)
