"""The peer scores of :mod:`sklearn_ntps.scores.peers` on the scorer contract of :mod:`.base`.

Each is its parameters and two hooks: the label-free state and what one
labelling adds. They read pooled features, so ``X`` may be per-text hidden
states, :class:`~sklearn_ntps.Moments` (``HFEmbeddingTransformer(output="tokens")``)
or a 2-D matrix of pooled features (``output="pooled"``): one pipeline serves
NTPS and its peers.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .._sklearn_compat import Interval, StrOptions
from ..checks import NumberInterval
from . import loo_probes, peers
from .base import BaseScorer
from .chance import CHANCE_CONSTRAINTS, N_PERMUTATIONS


class LogMEScorer(BaseScorer):
    """LogME (You et al., ICML 2021): mean log evidence per sample of Bayesian linear models.

    Evidence maximised in float64 (at the paper's fixed point, found by a Newton
    search on ``alpha / beta``) on one SVD of the features, for each class's
    one-hot target; the score is the mean over classes. See :func:`sklearn_ntps.scores.peers.logme`.

    Parameters
    ----------
    n_permutations : int, default=30
        Shuffles of the labels refitted after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
        LogME of the training data.
    chance_ : float
        The mean training score over the shuffled labels: what the score reads
        with labels that say nothing about the features.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        The score of each shuffle.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import LogMEScorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> X = rng.normal(size=(200, 5)) + y[:, None]
    >>> scorer = LogMEScorer().fit(X, y)
    >>> bool(scorer.score_ > LogMEScorer().fit(rng.normal(size=(200, 5)), y).score_)
    True
    """

    _parameter_constraints: dict = {**CHANCE_CONSTRAINTS}
    _name = "LogME"

    def __init__(self, *, n_permutations=N_PERMUTATIONS, random_state=0):
        self.n_permutations = n_permutations
        self.random_state = random_state

    def _state(self, features):
        return peers.logme_state(features)

    def _from_labels(self, state, codes):
        return peers.logme_from_labels(state, codes)

    def _from_labellings(self, state, labellings):
        return peers.logme_from_labellings(state, labellings)


class HScoreScorer(BaseScorer):
    """H-score (Bao et al., 2019) of centred features, regularised by default.

    ``tr(cov(f)^{-1} cov(E[f | y]))``; with ``shrinkage="ledoit-wolf"`` the
    covariance is Ledoit-Wolf's (the regularised H-score of Ibrahim et al.,
    2022), which keeps it well posed when there are fewer samples than
    features. See :func:`sklearn_ntps.scores.peers.hscore`.

    Parameters
    ----------
    shrinkage : "ledoit-wolf", float in [0, 1] or None, default="ledoit-wolf"
        None uses the pseudo-inverse of the sample covariance.
    n_permutations : int, default=30
        Shuffles of the labels refitted after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
    chance_ : float
        The mean training score over the shuffled labels: what the score reads
        with labels that say nothing about the features.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        The score of each shuffle.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import HScoreScorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> X = rng.normal(size=(200, 5)) + 3 * y[:, None]
    >>> round(HScoreScorer(shrinkage=None).fit(X, y).score_, 2)
    0.9
    """

    _parameter_constraints: dict = {
        "shrinkage": [None, StrOptions({"ledoit-wolf"}),
                      NumberInterval(Real, 0, 1, closed="both")],
        **CHANCE_CONSTRAINTS,
    }
    _name = "H-score"

    def __init__(self, *, shrinkage="ledoit-wolf", n_permutations=N_PERMUTATIONS,
                 random_state=0):
        self.shrinkage = shrinkage
        self.n_permutations = n_permutations
        self.random_state = random_state

    def _state(self, features):
        return peers.hscore_state(features, self.shrinkage)

    def _from_labels(self, state, codes):
        return peers.hscore_from_labels(state, codes)

    def _from_labellings(self, state, labellings):
        return peers.hscore_from_labellings(state, labellings)


class TransRateScorer(BaseScorer):
    """TransRate (Huang et al., ICML 2022): the coding rate of the features minus its class part.

    The distortion is relative to the root-mean-square of the centred
    features, ``eps * rms(Z)``, so the score is invariant to a global scale of
    the features. See :func:`sklearn_ntps.scores.peers.transrate` for the formula and
    how it relates to the authors' code.

    Parameters
    ----------
    eps : float, default=1e-4
        Relative distortion of the coding rate, in units of ``rms(Z)``.
    n_permutations : int, default=30
        Shuffles of the labels refitted after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
    chance_ : float
        The mean training score over the shuffled labels: what the score reads
        with labels that say nothing about the features.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        The score of each shuffle.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import TransRateScorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> X = rng.normal(size=(200, 5)) + 3 * y[:, None]
    >>> bool(TransRateScorer().fit(X, y).score_ > 0)
    True
    >>> scores = [TransRateScorer().fit(c * X, y).score_ for c in (1.0, 100.0)]
    >>> bool(np.isclose(*scores))  # invariant to a global scale
    True
    """

    _parameter_constraints: dict = {"eps": [Interval(Real, 0, None, closed="neither")],
                                    **CHANCE_CONSTRAINTS}
    _name = "TransRate"

    def __init__(self, *, eps=1e-4, n_permutations=N_PERMUTATIONS, random_state=0):
        self.eps = eps
        self.n_permutations = n_permutations
        self.random_state = random_state

    def _state(self, features):
        return peers.transrate_state(features, self.eps)

    def _from_labels(self, state, codes):
        return peers.transrate_from_labels(state, codes)


class RankMeScorer(BaseScorer):
    """RankMe (Garrido et al., ICML 2023): the effective rank of the features, label-free.

    The "no labels" baseline: a score that ignores the task entirely. See
    :func:`sklearn_ntps.scores.peers.rankme`.

    Parameters
    ----------
    eps : float, default=1e-7
        Added to the normalised singular values before their entropy.

    Attributes
    ----------
    score_ : float
        Between 1 and ``min(n_samples, n_features)``.
    chance_, chance_std_ : float
        NaN: RankMe reads no labels, so shuffling them changes nothing and it
        has no chance level. It is the reference a labelled score must beat.
    chance_scores_ : ndarray of shape (0,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import RankMeScorer
    >>> X = np.repeat(np.eye(3), 10, axis=0)   # rank 3, equal singular values
    >>> round(RankMeScorer().fit(X).score_, 3)
    3.0
    """

    _parameter_constraints: dict = {"eps": [Interval(Real, 0, None, closed="neither")]}
    _labelled = False

    def __init__(self, *, eps=1e-7):
        self.eps = eps

    def _compute(self, features):
        return peers.rankme(features, eps=self.eps)


class KNNScorer(BaseScorer):
    """Leave-one-out k-nearest-neighbour accuracy (transformer-ranker's kNN; Sorkhei et al., 2025).

    Each sample is classified by the majority class of its ``n_neighbors``
    nearest other samples in Euclidean distance, ties going to the smallest
    class; the score is the fraction classified right, exactly
    ``cross_val_score(KNeighborsClassifier(n_neighbors), X, y, cv=LeaveOneOut())``
    without refits. See :func:`sklearn_ntps.scores.loo_probes.knn_accuracy`.

    Parameters
    ----------
    n_neighbors : int, default=3
        At least 1, and below the number of samples.
    n_permutations : int, default=30
        Shuffles of the labels refitted after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
        The leave-one-out accuracy of the training data, in [0, 1].
    chance_ : float
        The mean training score over every shuffle of the labels, exact
        (:func:`~sklearn_ntps.scores.loo_probes.knn_chance`): it depends on the class
        counts alone, near ``sum_c (n_c / n)^2`` for one neighbour.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        The score of each shuffle.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import KNNScorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> X = rng.normal(size=(200, 5)) + 3 * y[:, None]
    >>> round(KNNScorer().fit(X, y).score_, 3)
    1.0
    """

    _parameter_constraints: dict = {
        "n_neighbors": [NumberInterval(Integral, 1, None, closed="left")],
        **CHANCE_CONSTRAINTS,
    }
    _name = "k-NN accuracy"

    def __init__(self, *, n_neighbors=3, n_permutations=N_PERMUTATIONS, random_state=0):
        self.n_neighbors = n_neighbors
        self.n_permutations = n_permutations
        self.random_state = random_state

    def _state(self, features):
        return loo_probes.knn_neighbours(features, self.n_neighbors)

    def _from_labels(self, state, codes):
        return loo_probes.knn_from_labels(state, codes)

    def _exact_chance(self, codes):
        return loo_probes.knn_chance(np.bincount(codes), self.n_neighbors)


class RidgeProbeScorer(BaseScorer):
    """Leave-one-out accuracy of a ridge linear probe, its alpha chosen by leave-one-out error.

    ``RidgeClassifier`` on ``{-1, 1}`` class indicators with an unpenalised
    intercept; the leave-one-out predictions for every alpha come in closed
    form from one SVD of the centred features; the alpha of smallest
    leave-one-out mean squared error is ``RidgeClassifierCV(alphas=alphas)``'s,
    and the score is the leave-one-out accuracy at that alpha. ``score(X, y)``
    chooses the alpha afresh on ``(X, y)``, as the other scores read only the
    data they are given. See :func:`sklearn_ntps.scores.loo_probes.ridge_loo_accuracy`.

    Parameters
    ----------
    alphas : array-like of float > 0, default=np.logspace(-3, 3, 13)
        Candidate penalties, in the units of the raw features (as in
        scikit-learn): the score is not invariant to the scale of the features.
    n_permutations : int, default=30
        Shuffles of the labels refitted after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
        The leave-one-out accuracy of the training data at ``alpha_``, in [0, 1].
    alpha_ : float
        The alpha chosen on the training data.
    chance_ : float
        The mean training score over the shuffled labels: what the score reads
        with labels that say nothing about the features.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        The score of each shuffle, its alpha chosen afresh on each.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import RidgeProbeScorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(200) % 2
    >>> X = rng.normal(size=(200, 5)) + 3 * y[:, None]
    >>> probe = RidgeProbeScorer().fit(X, y)
    >>> round(probe.score_, 3), round(probe.alpha_, 1)
    (0.995, 31.6)
    """

    _parameter_constraints: dict = {"alphas": ["array-like"], **CHANCE_CONSTRAINTS}
    _name = "The ridge probe's leave-one-out accuracy"

    def __init__(self, *, alphas=loo_probes._RIDGE_ALPHAS, n_permutations=N_PERMUTATIONS,
                 random_state=0):
        self.alphas = alphas
        self.n_permutations = n_permutations
        self.random_state = random_state

    def _state(self, features):
        return loo_probes.ridge_state(features, self.alphas)

    def _from_labels(self, state, codes):
        return loo_probes.ridge_from_labels(state, codes)[0]

    def _from_labellings(self, state, labellings):
        return loo_probes.ridge_from_labellings(state, labellings)[0]

    def _fit_score(self, state, codes):
        score, self.alpha_ = loo_probes.ridge_from_labels(state, codes)
        return score
