"""Chance levels: every labelled score against its own shuffled labels, with known answers."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone

from sklearn_ntps import (
    ChanceLevelWarning,
    HScoreScorer,
    KNNScorer,
    LogMEScorer,
    NTPSScorer,
    NTPSSubspaceProbe,
    RankMeScorer,
    RidgeProbeScorer,
    TransRateScorer,
    compute_moments,
    permutation_test,
)
from sklearn_ntps.datasets import make_token_states
from sklearn_ntps.scores.chance import label_permutations
from sklearn_ntps.scores.loo_probes import knn_chance, knn_from_labels, knn_neighbours

LABELLED = [NTPSScorer(), NTPSScorer(variant="paper"), LogMEScorer(), HScoreScorer(),
            TransRateScorer(), KNNScorer(), RidgeProbeScorer()]
IDS = ["ntps", "ntps_paper", "logme", "hscore", "transrate", "knn", "ridge"]


def planted(n, d, seed=0, n_classes=5, mirror=False):
    """Token states whose class lives in a predictable block of half the features."""
    X, y = make_token_states("predictable", n_texts=n, n_predictable=d // 2,
                             n_noise=d - d // 2, n_classes=n_classes, mirror=mirror,
                             random_state=seed)
    return compute_moments(X), y


def quietly(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChanceLevelWarning)
        return clone(estimator).fit(X, y)


@pytest.fixture(scope="module", params=[(50, 384), (100, 576), (300, 384), (1000, 576)],
                ids=lambda p: f"n={p[0]},d={p[1]}")
def states(request):
    return planted(*request.param)


@pytest.mark.parametrize("estimator", LABELLED, ids=IDS)
def test_labels_independent_of_the_states_read_chance(states, estimator):
    moments, y = states
    # A shuffle drawn apart from the scorer's own: labels that know nothing of the states.
    independent = np.random.default_rng(12345).permutation(y)
    fitted = quietly(estimator, moments, independent)
    z = (fitted.score_ - fitted.chance_) / fitted.chance_std_
    assert abs(z) <= 3, (fitted.score_, fitted.chance_, fitted.chance_std_)


@pytest.mark.parametrize("estimator", LABELLED, ids=IDS)
def test_a_planted_class_signal_reads_far_above_chance(estimator):
    # Mirrored texts: no moment couples the class block with the noise, so every score,
    # the paper's NTPS too, can see the class (unmirrored, the paper's form weighs the
    # low-variance noise directions and reads 3 sd above chance here).
    moments, y = planted(150, 64, mirror=True)
    fitted = quietly(estimator, moments, y)
    assert fitted.score_ - fitted.chance_ > 10 * fitted.chance_std_


@pytest.mark.parametrize("variant", ["whitened", "paper"])
@pytest.mark.parametrize("centering, shrinkage", [(False, None), (True, "ledoit-wolf")])
def test_ntps_chance_equals_refits_on_the_shuffles(variant, centering, shrinkage):
    moments, y = planted(120, 24, seed=3)
    params = dict(n_components=5, variant=variant, centering=centering, shrinkage=shrinkage)
    fitted = quietly(NTPSScorer(n_permutations=6, random_state=7, **params), moments, y)
    shuffles = label_permutations(y, 6, random_state=7)
    refits = [quietly(NTPSScorer(n_permutations=0, **params), moments, s).score_
              for s in shuffles]
    np.testing.assert_allclose(fitted.chance_scores_, refits, rtol=1e-9, atol=1e-12)
    assert fitted.chance_ == pytest.approx(np.mean(refits), rel=1e-9)
    assert fitted.chance_std_ == pytest.approx(np.std(refits, ddof=1), rel=1e-6)


@pytest.mark.parametrize("estimator", LABELLED[2:], ids=IDS[2:])
def test_peer_chance_equals_refits_on_the_shuffles(estimator):
    moments, y = planted(90, 12, seed=4, n_classes=3)
    fitted = quietly(clone(estimator).set_params(n_permutations=5, random_state=1), moments, y)
    refits = [quietly(clone(estimator).set_params(n_permutations=0), moments, s).score_
              for s in label_permutations(y, 5, random_state=1)]
    np.testing.assert_allclose(fitted.chance_scores_, refits, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("counts, k", [([5, 5], 1), ([30, 20, 10], 3), ([3, 40, 7], 5),
                                       ([12] * 8, 4)])
def test_knn_exact_chance_is_the_mean_over_permutations(counts, k):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(counts)), counts)
    neighbours = knn_neighbours(rng.normal(size=(y.size, 5)), k)
    shuffled = [knn_from_labels(neighbours, rng.permutation(y)) for _ in range(4000)]
    se = np.std(shuffled) / np.sqrt(len(shuffled))
    assert abs(knn_chance(counts, k) - np.mean(shuffled)) < 4 * se + 1e-12


def test_knn_exact_chance_by_hand():
    # One neighbour: of your own class (n_c - 1) times in (n - 1).
    assert knn_chance([5, 5], 1) == pytest.approx(4 / 9)
    # Two classes, three neighbours, 3 and 2 samples: class 0 needs >= 2 of its other 2 among
    # the 3 drawn from 4 others: C(2,2) C(2,1) / C(4,3) = 1/2; class 1 needs both... its one
    # other of class 1 and then at least as many as class 0: impossible with 3 neighbours
    # and 1 left of class 1 (1 vs 2), so 0. Expected: 3/5 * 1/2 + 2/5 * 0.
    assert knn_chance([3, 2], 3) == pytest.approx(0.3)


def test_ntps_at_n_below_k_warns_with_its_numbers():
    moments, y = planted(100, 576)
    with pytest.warns(ChanceLevelWarning, match=r"k = 144 of d = 576 dimensions from n = 100"):
        fitted = NTPSScorer().fit(moments, y)
    assert fitted.chance_ > 0.9  # the ceiling the warning names


def test_a_score_at_chance_warns_and_one_above_does_not():
    moments, y = planted(300, 64)
    noise = np.random.default_rng(1).permutation(y)
    with pytest.warns(ChanceLevelWarning, match=r"LogME = .* within 2 standard deviations"):
        LogMEScorer().fit(moments, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChanceLevelWarning)
        LogMEScorer().fit(moments, y)


def test_no_permutations_no_chance_level():
    moments, y = planted(60, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChanceLevelWarning)
        fitted = LogMEScorer(n_permutations=0).fit(moments, y)
    assert np.isnan(fitted.chance_) and fitted.chance_scores_.shape == (0,)


def test_rankme_reads_no_labels_so_has_no_chance_level():
    moments, y = planted(60, 16)
    fitted = RankMeScorer().fit(moments, y)
    assert np.isnan(fitted.chance_) and np.isnan(fitted.chance_std_)


def test_the_subspace_probe_has_the_scorers_chance_level():
    moments, y = planted(200, 16)
    probe = quietly(NTPSSubspaceProbe(n_components=4), moments, y)
    scorer = quietly(NTPSScorer(n_components=4), moments, y)
    np.testing.assert_array_equal(probe.chance_scores_, scorer.chance_scores_)


def test_shuffles_are_seeded_and_shared_across_layers():
    moments, y = planted(80, 16)
    a = quietly(LogMEScorer(random_state=3), moments, y)
    b = quietly(LogMEScorer(random_state=3), moments, y)
    np.testing.assert_array_equal(a.chance_scores_, b.chance_scores_)
    assert not np.array_equal(a.chance_scores_,
                              quietly(LogMEScorer(random_state=4), moments, y).chance_scores_)


class _PlainScorer(BaseEstimator):
    """A scorer written outside the package: fit(X, y).score_, no chance level of its own."""

    def fit(self, X, y):
        self.score_ = float(np.mean(np.asarray(X)[:, 0][np.asarray(y) == 1]))
        return self


def test_permutation_test_matches_its_definition():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    X = rng.normal(size=(60, 3)) + 2.0 * y[:, None]
    score, shuffled, pvalue = permutation_test(LogMEScorer(), X, y, n_permutations=19)
    assert shuffled.shape == (19,) and score > shuffled.max()
    assert pvalue == pytest.approx(1 / 20)
    # Any fit(X, y).score_ estimator: refitted on the same shuffles.
    score, shuffled, pvalue = permutation_test(_PlainScorer(), X, y, n_permutations=9)
    expected = [np.mean(X[:, 0][s == 1]) for s in label_permutations(y, 9, random_state=0)]
    np.testing.assert_allclose(shuffled, expected)
    assert pvalue == pytest.approx((np.sum(shuffled >= score) + 1) / 10)
