import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ntps.choice.logistic_path import LogisticRegressionPathCV, _log_frequencies

CS = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]


def classes(n, d, k, signal, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + signal * rng.normal(size=(k, d))[y], y


def both(X, y, **params):
    """Ours and scikit-learn's on the same folds, C grid and scoring, fitted tightly."""
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)
    common = dict(Cs=CS, cv=cv, scoring="neg_log_loss", tol=1e-10, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # l1_ratios' default, by version
        ours = LogisticRegressionPathCV(**common, **params).fit(X, y)
        theirs = LogisticRegressionCV(**common, **params).fit(X, y)
    return ours, theirs


@pytest.mark.parametrize("k", [2, 4])
def test_it_finds_scikit_learns_optimum_and_C(k):
    X, y = classes(150, 10, k, 0.4)
    ours, theirs = both(X, y)
    assert ours.C_ == float(np.ravel(theirs.C_)[0])
    assert ours.coef_.shape == theirs.coef_.shape
    # One objective, two starting points: the optimum agrees to the solver's tolerance.
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)
    scores = np.asarray(theirs.scores_[1] if isinstance(theirs.scores_, dict)
                        else theirs.scores_).reshape(6, -1)
    np.testing.assert_allclose(ours.scores_, scores, atol=1e-6)
    assert np.array_equal(ours.predict(X), theirs.predict(X))


def test_the_first_C_starts_at_the_log_class_frequencies():
    rng = np.random.default_rng(0)
    y = np.minimum(rng.geometric(3 / 20, size=300) - 1, 19)  # unequal classes, as in BANKING77
    X = rng.normal(size=(300, 50)) + 0.3 * rng.normal(size=(20, 50))[y]
    X = (X - X.mean(0)) / X.std(0)  # the probe's footing
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = LogisticRegressionPathCV(Cs=CS, cv=cv).fit(X, y)
        theirs = LogisticRegressionCV(Cs=CS, cv=cv, scoring="neg_log_loss",
                                      max_iter=1000).fit(X, y)
    first_theirs = np.asarray(theirs.n_iter_).reshape(3, -1)[:, 0]
    # From zero, L-BFGS crawls along the unpenalised intercepts (hundreds of iterations);
    # started at the priors, the smallest C is all but solved (2 here).
    assert ours.n_iter_[:, 0].max() * 10 < first_theirs.min()
    assert ours.n_iter_.sum() * 2 < np.sum(theirs.n_iter_)
    assert ours.C_ == float(np.ravel(theirs.C_)[0])
    lr = LogisticRegression(C=1e-6, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(lr.intercept_ - lr.intercept_.mean(),
                               _log_frequencies(y, np.ones(len(y)), 20), atol=1e-3)


def test_a_class_missing_from_a_folds_training_rows_gets_probability_zero_there():
    X, y = classes(61, 5, 3, 1.0)
    y[0] = 3  # a class of one text: two training folds of three lack it
    with pytest.warns(UserWarning, match="least populated class"):
        lr = LogisticRegressionPathCV(Cs=[0.1, 1.0]).fit(X, y)
    assert np.array_equal(lr.classes_, [0, 1, 2, 3])
    assert lr.predict_proba(X).shape == (61, 4) and lr.C_ in (0.1, 1.0)
    # The fold that held the lone text out scores its log-loss with probability ~0 for it.
    assert np.isfinite(lr.scores_).all() and lr.scores_.min() < -1.0


def test_sample_weights_enter_every_fit_and_the_score():
    X, y = classes(90, 5, 3, 0.5)
    w = np.linspace(0.2, 3.0, 90)
    plain = LogisticRegressionPathCV(Cs=CS).fit(X, y)
    weighted = LogisticRegressionPathCV(Cs=CS).fit(X, y, sample_weight=w)
    assert not np.allclose(plain.scores_, weighted.scores_)
    ones = LogisticRegressionPathCV(Cs=CS).fit(X, y, sample_weight=np.ones(90))
    np.testing.assert_allclose(ones.coef_, plain.coef_)


def test_an_int_Cs_is_a_log_grid_and_a_callable_scores_the_folds():
    X, y = classes(60, 4, 2, 1.0)
    lr = LogisticRegressionPathCV(Cs=5, scoring=lambda est, X, y: -abs(np.log10(est.C))).fit(X, y)
    np.testing.assert_allclose(lr.Cs_, np.logspace(-4, 4, 5))
    assert lr.C_ == 1.0  # the callable's best, not the data's
    with pytest.raises(ValueError, match="neg_log_loss"):
        LogisticRegressionPathCV(scoring="accuracy").fit(X, y)
    with pytest.raises(ValueError, match="Two classes"):
        LogisticRegressionPathCV().fit(X, np.zeros(60))


@parametrize_with_checks([LogisticRegressionPathCV(Cs=3)])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)
