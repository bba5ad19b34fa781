"""Chance levels: what a score reads when the labels carry no information.

Every labelled score (NTPS and its peers) is refitted on ``n_permutations``
seeded shuffles of the labels after ``fit``; the mean and the standard
deviation of those scores are its ``chance_`` and ``chance_std_``. A shuffle
keeps the class counts and the features, so the chance level is exactly what
the score reads at this number of texts, features and classes with labels that
say nothing about the texts. At small ``n`` that can be most of the score:
NTPS reads 0.99 on random labels with 100 texts at ``k = 144``.

The label-free work (an SVD, a whitening, the neighbours, the autoregressive
subspace) is done once and shared by every shuffle; each scorer supplies its
label-dependent part, so a chance level costs a few percent of the fit.
:func:`permutation_test` is scikit-learn's ``permutation_test_score`` for a
score: the score, the shuffled scores and a p-value.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from .._sklearn_compat import Interval
from .._warnings import warn_at_caller
from ..checks import encode_labels

__all__ = ["CHANCE_CONSTRAINTS", "N_PERMUTATIONS", "ChanceLevelWarning", "label_permutations",
           "permutation_test"]

# Shuffles per fit by default. The standard deviation of 30 draws is within about 13% of
# its value (1 / sqrt(2 (m - 1))), enough to read "k standard deviations above chance"
# to one digit; permutation_test takes more for a p-value.
N_PERMUTATIONS = 30

# The parameters every labelled scorer takes, declared once.
CHANCE_CONSTRAINTS = {
    "n_permutations": [Interval(Integral, 0, None, closed="left")],
    "random_state": ["random_state"],
}


class ChanceLevelWarning(UserWarning):
    """A score that cannot be told from its chance level on these texts."""


def label_permutations(codes, n_permutations, random_state=0) -> list:
    """``n_permutations`` seeded shuffles of ``codes``.

    The same ``random_state`` and number of texts give the same shuffles, so
    every layer of a model, scored on the same texts, is compared with chance
    on the same labellings.

    Examples
    --------
    >>> from sklearn_ntps.scores.chance import label_permutations
    >>> [p.tolist() for p in label_permutations([0, 0, 1, 1], 2, random_state=0)]
    [[1, 0, 0, 1], [1, 1, 0, 0]]
    """
    codes = np.asarray(codes)
    if random_state is None or isinstance(random_state, (Integral, np.integer)):
        seed = random_state
    else:
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    return [rng.permutation(codes) for _ in range(n_permutations)]


class ChanceMixin:
    """``chance_``, ``chance_std_`` and ``chance_scores_`` for a scorer's fit.

    The scorer calls :meth:`_fit_chance` at the end of ``fit`` with a function
    that scores one labelling from what ``fit`` already computed; it reads
    ``n_permutations`` and ``random_state`` from the scorer's parameters.
    """

    def _fit_chance(self, score_labellings, codes, *, exact=None):
        """``chance_``, ``chance_std_`` and ``chance_scores_`` from the shuffled labels.

        ``score_labellings`` maps a list of labellings (code arrays) to their
        scores, from the work ``fit`` already did. ``exact`` is the mean over
        every permutation where one is known in closed form (it then replaces
        the sampled mean; the spread is sampled).
        """
        shuffles = label_permutations(codes, self.n_permutations, self.random_state)
        scores = np.asarray(score_labellings(shuffles) if shuffles else [], dtype=np.float64)
        finite = scores[np.isfinite(scores)]
        self.chance_scores_ = scores
        self.chance_ = float(exact) if exact is not None else (
            float(finite.mean()) if finite.size else float("nan"))
        self.chance_std_ = float(finite.std(ddof=1)) if finite.size >= 2 else float("nan")

    def _warn_at_chance(self, name, n_texts, n_features, n_classes,
                        advice="More texts per class would help."):
        """Warn when the fitted score is within 2 standard deviations of its chance level."""
        if self.score_ - self.chance_ <= 2 * self.chance_std_:
            warn_at_caller(
                f"{name} = {self.score_:.4g} is within 2 standard deviations of its chance "
                f"level, {self.chance_:.4g} +- {self.chance_std_:.2g} (over "
                f"{self.chance_scores_.size} shuffles of the labels), at n = {n_texts} texts, "
                f"d = {n_features} features, {n_classes} classes: on these texts it does not "
                f"tell the labels from random ones. {advice}", ChanceLevelWarning)

    def _no_chance(self):
        """The label-free scores: no labels to shuffle, so no chance level."""
        self.chance_scores_ = np.empty(0)
        self.chance_ = self.chance_std_ = float("nan")


def permutation_test(scorer, X, y, *, n_permutations=100, random_state=0):
    """The score, its values on shuffled labels, and the p-value of the score against them.

    scikit-learn's ``permutation_test_score`` for a scorer of this package:
    the scorer is fitted once with ``n_permutations`` shuffles, which share the
    label-free work. Any other estimator with the NTPSScorer API
    (``fit(X, y).score_``) is refitted on each shuffle.

    Parameters
    ----------
    scorer : estimator
        ``fit(X, y).score_``, higher is better.
    X : Moments, sequence of per-text states, or features
    y : array-like of shape (n_texts,)
    n_permutations : int, default=100
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Returns
    -------
    score : float
        The score of ``(X, y)``.
    permutation_scores : ndarray of shape (n_permutations,)
        The score of each shuffle of ``y``.
    pvalue : float
        ``(C + 1) / (n_permutations + 1)``, ``C`` the number of shuffles that
        score at least ``score``: the chance of a score as high with labels that
        say nothing about the texts. Its smallest value is ``1 / (n_permutations + 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import LogMEScorer
    >>> from sklearn_ntps.scores.chance import permutation_test
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(100) % 2
    >>> X = rng.normal(size=(100, 5)) + y[:, None]
    >>> score, shuffled, pvalue = permutation_test(LogMEScorer(), X, y, n_permutations=99)
    >>> shuffled.shape, round(pvalue, 2)
    ((99,), 0.01)
    """
    est = clone(scorer)
    if "n_permutations" in est.get_params():
        est.set_params(n_permutations=n_permutations, random_state=random_state).fit(X, y)
        score, shuffled = float(est.score_), est.chance_scores_
    else:
        score = float(est.fit(X, y).score_)
        classes, codes = encode_labels(y)
        shuffled = np.array([float(clone(scorer).fit(X, classes[p]).score_) for p in
                             label_permutations(codes, n_permutations, random_state)])
    pvalue = (np.sum(shuffled >= score) + 1.0) / (n_permutations + 1.0)
    return score, shuffled, float(pvalue)
