"""The peer scores as estimators: same inputs and contract as NTPSScorer."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import estimator_checks as ec

from sklearn_ntps import (
    HScoreScorer,
    KNNScorer,
    LogMEScorer,
    RankMeScorer,
    RidgeProbeScorer,
    TransRateScorer,
    compute_moments,
)
from sklearn_ntps.scores import loo_probes, peers

from builders import make_texts

PEERS = [LogMEScorer, HScoreScorer, TransRateScorer, RankMeScorer, KNNScorer, RidgeProbeScorer]
FUNCTIONS = {LogMEScorer: peers.logme, HScoreScorer: peers.hscore,
             TransRateScorer: peers.transrate, RankMeScorer: lambda X, y: peers.rankme(X),
             KNNScorer: loo_probes.knn_accuracy, RidgeProbeScorer: loo_probes.ridge_loo_accuracy}


@pytest.mark.parametrize("Est", PEERS)
def test_every_input_form_gives_the_function_value(Est):
    X, y = make_texts(n_texts=90, n_features=6, min_len=1, seed=31)
    pooled = np.array([x.mean(axis=0) for x in X])
    ref = FUNCTIONS[Est](pooled, y)
    for form in (X, compute_moments(X), pooled):
        est = Est().fit(form, y)
        assert est.score_ == pytest.approx(ref, rel=1e-12)
        assert est.score(form, y) == pytest.approx(ref, rel=1e-12)
    assert Est().fit(pooled, y).n_features_in_ == 6


@pytest.mark.parametrize("Est", PEERS)
def test_contract(Est):
    X, y = make_texts(n_texts=60, n_features=5, seed=32)
    est = Est()
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(TypeError):
        Est(1)
    with pytest.raises(NotFittedError):
        est.score(X, y)
    est.fit(X[:40], y[:40])
    assert pickle.loads(pickle.dumps(est)).score(X[40:], y[40:]) == est.score(X[40:], y[40:])
    with pytest.raises(ValueError, match=r"X has 4 features, but .* expecting 5 features"):
        est.score([x[:, :4] for x in X], y)
    scores = cross_val_score(Est(), np.array([x.mean(0) for x in X]), y, cv=3)
    assert np.isfinite(scores).all()


def test_grid_search_over_a_peer_parameter():
    X, y = make_texts(n_texts=90, n_features=5, seed=33)
    grid = GridSearchCV(HScoreScorer(), {"shrinkage": [None, "ledoit-wolf", 0.5]}, cv=3)
    assert grid.fit(np.array([x.mean(0) for x in X]), y).best_params_["shrinkage"] in (
        None, "ledoit-wolf", 0.5)


@pytest.mark.parametrize("Est", [LogMEScorer, HScoreScorer, TransRateScorer, KNNScorer,
                                 RidgeProbeScorer])
def test_labelled_scores_need_labels(Est):
    with pytest.raises(ValueError, match="requires y to be passed"):
        Est().fit(np.ones((4, 2)))
    with pytest.raises(ValueError, match="two"):
        Est().fit(np.random.default_rng(0).normal(size=(6, 2)), np.zeros(6))


def test_rankme_ignores_labels():
    X = np.random.default_rng(0).normal(size=(30, 4))
    assert RankMeScorer().fit(X).score_ == RankMeScorer().fit(X, np.arange(30) % 2).score_


@pytest.mark.parametrize("params, match", [
    ({"shrinkage": 2.0}, "shrinkage"), ({"shrinkage": "oas"}, "shrinkage")])
def test_parameters_are_validated(params, match):
    with pytest.raises(ValueError, match=match):
        HScoreScorer(**params).fit(np.ones((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="eps"):
        TransRateScorer(eps=-1).fit(np.ones((4, 2)), [0, 1, 0, 1])


@pytest.mark.parametrize("params, match", [
    ({"n_neighbors": 0}, "n_neighbors"), ({"n_neighbors": 2.5}, "n_neighbors"),
    ({"n_neighbors": "3"}, "n_neighbors"), ({"n_neighbors": 4}, "below n_samples=4")])
def test_knn_parameters_are_validated(params, match):
    with pytest.raises(ValueError, match=match):
        KNNScorer(**params).fit(np.eye(4), [0, 1, 0, 1])


@pytest.mark.parametrize("alphas", [[], [0.0], [-1.0, 1.0], [np.nan], "1", None])
def test_ridge_alphas_are_validated(alphas):
    with pytest.raises(ValueError, match="alphas"):
        RidgeProbeScorer(alphas=alphas).fit(np.eye(4), [0, 1, 0, 1])


def test_ridge_probe_stores_the_chosen_alpha():
    from sklearn.linear_model import RidgeClassifierCV

    X, y = make_texts(n_texts=80, n_features=6, seed=34)
    pooled = np.array([x.mean(0) for x in X])
    alphas = np.logspace(-2, 2, 5)
    probe = RidgeProbeScorer(alphas=alphas).fit(X, y)
    assert probe.alpha_ == RidgeClassifierCV(alphas=alphas).fit(pooled, y).alpha_
    assert probe.score_ == loo_probes.ridge_loo_accuracy(pooled, y, alphas=alphas)
    assert RidgeProbeScorer().get_params()["alphas"] == pytest.approx(np.logspace(-3, 3, 13))


def test_knn_scorer_default_is_transformer_rankers_k():
    assert KNNScorer().n_neighbors == 3


API_CHECKS = [ec.check_estimator_cloneable, ec.check_estimator_repr,
              ec.check_no_attributes_set_in_init, ec.check_get_params_invariance,
              ec.check_set_params, ec.check_parameters_default_constructible,
              ec.check_do_not_raise_errors_in_init_or_set_params, ec.check_valid_tag_types]


@pytest.mark.parametrize("Est", PEERS)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(Est, check):
    check(Est.__name__, Est())
