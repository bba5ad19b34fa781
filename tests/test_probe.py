import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_ntps
from sklearn_ntps.choice.probe import (
    PROBE_CS,
    _canonical_order,
    _OneBLASThreadPipeline,
    _ProbePipeline,
    default_probe,
)


def classes(n, d, k, signal, seed=0):
    """Gaussian classes of random means: weak enough a signal that C lands inside the grid."""
    rng = np.random.default_rng(seed)
    means = signal * rng.normal(size=(k, d))
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + means[y], y


def fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(default_probe()).fit(X, y, **params)


def chosen_c(probe):
    return float(np.ravel(probe[-1].C_)[0])


def fold_scores(lr):
    """``scores_`` as (folds, Cs), with plain or legacy attributes."""
    scores = lr.scores_
    scores = next(iter(scores.values())) if isinstance(scores, dict) else scores
    return np.asarray(scores).reshape(scores.shape[0], -1)


def test_it_is_exported_from_the_package():
    assert sklearn_ntps.default_probe is default_probe
    assert "default_probe" in sklearn_ntps.__all__


def test_the_same_rows_in_any_order_give_the_same_probe():
    X, y = classes(100, 576, 5, 0.1)
    X_test = np.random.default_rng(1).normal(size=(300, 576))
    reference = fit(X, y)
    assert min(PROBE_CS) < chosen_c(reference) < max(PROBE_CS)  # not pinned to an edge
    rng = np.random.default_rng(0)
    for order in [np.arange(100)[::-1], *(rng.permutation(100) for _ in range(3))]:
        probe = fit(X[order], y[order])
        assert chosen_c(probe) == chosen_c(reference)
        assert np.array_equal(probe[-1].coef_, reference[-1].coef_)
        assert np.array_equal(probe[-1].intercept_, reference[-1].intercept_)
        assert np.array_equal(probe[0].mean_, reference[0].mean_)
        assert np.array_equal(probe.predict(X_test), reference.predict(X_test))
        assert np.array_equal(probe.predict_proba(X_test), reference.predict_proba(X_test))


def test_duplicated_rows_and_sample_weights_follow_their_rows():
    X, y = classes(60, 5, 3, 1.0)
    # Two rows twice with the same label, one twice with another: ties broken by the label.
    X = np.vstack([X, X[:2], X[2:3]])
    y = np.concatenate([y, y[:2], [(y[2] + 1) % 3]])
    w = np.linspace(0.5, 2.0, len(y))
    w[-1] = 3.0
    reference = fit(X, y, logisticregressionpathcv__sample_weight=w)
    order = np.random.default_rng(1).permutation(len(y))
    probe = fit(X[order], y[order], logisticregressionpathcv__sample_weight=w[order])
    assert np.array_equal(probe[-1].coef_, reference[-1].coef_)
    unweighted = fit(X, y)
    assert not np.array_equal(unweighted[-1].coef_, reference[-1].coef_)


def test_the_canonical_order_is_a_function_of_the_rows_and_labels():
    X, y = classes(50, 4, 2, 1.0)
    order = _canonical_order(X, y)
    assert sorted(order.tolist()) == list(range(50))
    perm = np.random.default_rng(0).permutation(50)
    assert np.array_equal(X[perm][_canonical_order(X[perm], y[perm])], X[order])
    # float32 and float64 rows of the same values sort alike, and so do lists.
    assert np.array_equal(_canonical_order(X.astype(np.float32).astype(np.float64), y),
                          _canonical_order(X.astype(np.float32), y))
    assert np.array_equal(_canonical_order(X.tolist(), y.tolist()), order)


def test_C_is_chosen_by_log_loss_over_3_repeats_of_3_stratified_folds():
    X, y = classes(90, 6, 3, 0.6)
    probe = fit(X, y)
    lr = probe[-1]
    assert lr.Cs == list(PROBE_CS) and lr.scoring == "neg_log_loss"
    # Independently: the rows in canonical order, scaled on all of them (as the pipeline
    # does), 9 folds, a logistic regression per fold and C, the held-out log-loss.
    order = _canonical_order(X, y)
    Xs, ys = StandardScaler().fit_transform(X[order]), y[order]
    folds = list(RepeatedStratifiedKFold(n_splits=3, n_repeats=3, random_state=0).split(Xs, ys))
    expected = np.array([[-log_loss(ys[test], LogisticRegression(C=c, tol=1e-10, max_iter=10_000)
                                    .fit(Xs[train], ys[train]).predict_proba(Xs[test]))
                          for c in PROBE_CS] for train, test in folds])
    scores = fold_scores(lr)
    assert scores.shape == (9, len(PROBE_CS))
    np.testing.assert_allclose(scores, expected, atol=2e-3)
    mean = expected.mean(axis=0)
    best = int(np.argmax(mean))
    assert np.sort(mean)[-1] - np.sort(mean)[-2] > 0.01  # a clear winner, on any processor
    assert chosen_c(probe) == PROBE_CS[best]
    # and C is the first best of the probe's own mean scores
    assert chosen_c(probe) == PROBE_CS[int(np.argmax(scores.mean(axis=0)))]


def test_a_tie_goes_to_the_smallest_C():
    X, y = classes(60, 5, 3, 1.0)
    probe = clone(default_probe())
    assert list(probe[-1].Cs) == sorted(PROBE_CS)  # the first best is kept
    probe.set_params(logisticregressionpathcv__scoring=lambda estimator, X, y: 0.0)
    assert chosen_c(probe.fit(X, y)) == min(PROBE_CS)


def test_string_labels_give_the_probe_of_their_codes():
    X, y = classes(90, 6, 3, 0.6)
    names = np.array(["ant", "bee", "cat"])  # sorted as the codes 0, 1, 2
    coded, named = fit(X, y), fit(X, names[y])
    assert np.array_equal(named.classes_, names)
    assert chosen_c(named) == chosen_c(coded)
    assert np.array_equal(named[-1].coef_, coded[-1].coef_)
    assert np.array_equal(named.predict(X), names[coded.predict(X)])


def test_classes_smaller_than_the_folds_warn_and_fit():
    X, y = classes(62, 5, 3, 1.0)
    y[:2] = 3  # a class of two texts, fewer than 3 folds
    with pytest.warns(UserWarning, match="least populated class"):
        probe = fit(X, y)
    assert probe.predict_proba(X).shape == (62, 4) and chosen_c(probe) in PROBE_CS


def test_score_is_accuracy_and_it_clones_pickles_and_cross_validates():
    X, y = classes(90, 6, 3, 0.6)
    probe = fit(X, y)
    assert probe.score(X, y) == accuracy_score(y, probe.predict(X))
    again = pickle.loads(pickle.dumps(probe))
    assert type(again) is _ProbePipeline
    assert np.array_equal(again.predict_proba(X), probe.predict_proba(X))
    assert type(clone(probe)) is _ProbePipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(default_probe(), X, y, cv=3)
        by_hand = [clone(default_probe()).fit(X[tr], y[tr]).score(X[te], y[te])
                   for tr, te in StratifiedKFold(3).split(X, y)]
    np.testing.assert_array_equal(scores, by_hand)


def test_the_probe_fits_with_every_blas_pool_on_one_thread():
    from sklearn.base import BaseEstimator
    from threadpoolctl import threadpool_info

    class Recorder(BaseEstimator):
        def fit(self, X, y=None):
            self.threads_ = [p["num_threads"] for p in threadpool_info()
                             if p["user_api"] == "blas"]
            return self

    probe = clone(default_probe())
    assert isinstance(probe, _OneBLASThreadPipeline)
    before = Recorder().fit(None).threads_
    fitted = clone(_OneBLASThreadPipeline([("r", Recorder())])).fit(np.zeros((2, 1)))
    assert fitted[-1].threads_ and set(fitted[-1].threads_) == {1}
    assert Recorder().fit(None).threads_ == before  # restored afterwards
    X = np.random.default_rng(0).normal(size=(60, 4))
    y = np.arange(60) % 3
    # The same steps in a plain Pipeline, on the rows in the canonical order: the same fit.
    order = _canonical_order(X, y)
    plain = Pipeline(clone(default_probe()).steps).fit(X[order], y[order])
    assert np.array_equal(probe.fit(X, y).predict_proba(X), plain.predict_proba(X))


def test_folds_in_processes_give_the_same_bits():
    X, y = classes(150, 12, 4, 0.4, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = default_probe(n_jobs=None).fit(X, y)[-1]
        apart = default_probe(n_jobs=2).fit(X, y)[-1]
    assert here.n_jobs is None and apart.n_jobs == 2
    np.testing.assert_array_equal(apart.coef_, here.coef_)
    np.testing.assert_array_equal(apart.C_, here.C_)
