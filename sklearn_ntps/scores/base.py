"""The contract every score keeps, NTPS and its peers alike, and a score made of one function.

``fit(X, y)`` validates once (:meth:`BaseScorer._check_input`, then
:func:`~sklearn_ntps.checks.check_labelled`), stores the training score in
``score_`` and its chance level in ``chance_`` (:mod:`sklearn_ntps.scores.chance`);
``score(X, y)`` returns the score of new data, a float, higher is better. A
score says what it reads (``_reads``): pooled features, which may come as
per-text states, :class:`~sklearn_ntps.Moments` or a 2-D matrix, or the token
moments NTPS needs. It splits its work in two hooks, ``_state(data)`` (the
label-free part) and ``_from_labels(state, codes)`` (what one labelling adds),
so the shuffles of the chance level share the first.

A new score needs none of this: :class:`FunctionScorer` wraps a function
``score_func(features, codes) -> float``, as ``SelectKBest(score_func=...)``
does, and :func:`~sklearn_ntps.scores.registry.register_score` adds it to the
report, ``select`` and the command line.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from .._sklearn_compat import _fit_context
from .._utils import one_blas_pool
from ..checks import check_features, check_labelled
from ..states.moments import compute_moments, pooled_features
from ..states.statistics import Moments
from .chance import CHANCE_CONSTRAINTS, N_PERMUTATIONS, ChanceMixin

__all__ = ["BaseScorer", "FunctionScorer", "pooled_input"]


def pooled_input(X) -> np.ndarray:
    """Pooled features of any accepted input: Moments, per-text states, or a 2-D matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.base import pooled_input
    >>> pooled_input([np.array([[0.0, 2.0], [2.0, 4.0]])]).tolist()
    [[1.0, 3.0]]
    """
    if isinstance(X, Moments):
        return X.pooled
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return X
    if isinstance(X, np.ndarray) or (isinstance(X, (list, tuple)) and X
                                     and getattr(X[0], "ndim", None) == 2):
        return pooled_features(X)
    return X  # nested lists and the like: check_features says what is wrong


class BaseScorer(ChanceMixin, BaseEstimator):
    """Fit a score on labelled texts, beside its chance level; score new ones.

    Subclasses set ``_reads`` (``"pooled"`` or ``"tokens"``), ``_name`` (for
    messages) and ``_labelled``, and define the hooks ``_state`` and
    ``_from_labels`` (a label-free score defines ``_compute`` instead).
    ``_from_labellings``, ``_fit_score``, ``_exact_chance`` and ``_score_new``
    have defaults a subclass overrides where it can do better.
    """

    _parameter_constraints: dict = {}
    _reads = "pooled"
    _labelled = True
    _name = "The score"

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Score the training data and store it in ``score_``, beside its chance level.

        Parameters
        ----------
        X : Moments, sequence of (n_tokens_i, n_features) arrays, or array of
            shape (n_samples, n_features)
            A 2-D matrix of pooled features only for a score that reads pooled
            features.
        y : array-like of shape (n_samples,)
            Class labels (ignored by the label-free scores).

        Returns
        -------
        self : object
            The fitted scorer.
        """
        return self._fit(X, y)

    def _fit(self, X, y):
        # fit's body, for a subclass whose fit validates nested estimators.
        self._reset()
        data = self._check_input(X, reset=True)
        if not self._labelled:
            self.score_ = float(self._compute(data))
            self._no_chance()
            return self
        return self._fit_checked(data, *check_labelled(data, y, estimator=self))

    @one_blas_pool()  # LAPACK on small matrices thrashes two spinning pools
    def _fit_checked(self, data, classes, codes):
        """The fit on validated data and labels: the score, then its chance level."""
        self.classes_ = classes
        state = self._state(data)
        self.score_ = float(self._fit_score(state, codes))
        self._fit_chance(lambda shuffles: self._from_labellings(state, shuffles), codes,
                         exact=self._exact_chance(codes))
        self._warn_fitted(data, codes)
        return self

    @one_blas_pool()
    def score(self, X, y=None):
        """The score of ``(X, y)``: a float, higher is better.

        Parameters
        ----------
        X : Moments, sequence of (n_tokens_i, n_features) arrays, or array of
            shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        score : float
        """
        self._check_fitted()
        features = self._check_input(X, reset=False)
        if not self._labelled:
            return float(self._compute(features))
        codes = check_labelled(features, y, estimator=self)[1]
        return float(self._score_new(features, codes))

    def _check_input(self, X, *, reset):
        """The one input path: what the score reads, validated as scikit-learn validates.

        ``fit`` of a score that reads tokens gets :class:`~sklearn_ntps.Moments`;
        everything else gets a float64 matrix of pooled features.
        """
        if reset and self._reads == "tokens":
            moments = compute_moments(X)
            self.n_features_in_ = moments.n_features
            return moments
        # Non-finite values are left to check_features, which names them without
        # numpy's overflow warnings on the way.
        pooled = validate_data(self, pooled_input(X), reset=reset, ensure_min_samples=2,
                               ensure_all_finite=False)
        return check_features(pooled)

    def _reset(self):
        """Forget what a previous fit kept beyond its fitted attributes (none by default)."""

    def _check_fitted(self):
        check_is_fitted(self)

    def _fit_score(self, state, codes):
        """The training score; a subclass that stores more fitted attributes sets them here."""
        return self._from_labels(state, codes)

    def _from_labellings(self, state, labellings):
        """The scores of several labellings; a subclass batches them where that pays."""
        return [self._from_labels(state, codes) for codes in labellings]

    def _exact_chance(self, codes):
        """The mean over every shuffle in closed form, where the score has one; else None."""
        return None

    def _score_new(self, features, codes):
        """The score of new data: by default the score computed afresh on it."""
        return self._from_labels(self._state(features), codes)

    def _warn_fitted(self, data, codes):
        n, d = (len(data), data.n_features) if isinstance(data, Moments) else data.shape
        self._warn_at_chance(self._name, n, d, int(codes.max()) + 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = self._labelled
        if self._reads == "tokens":
            # Sequences of per-text (n_tokens, n_features) arrays, a 3-D array or
            # Moments: never a plain 2-D feature matrix.
            tags.input_tags.two_d_array = False
        return tags


class FunctionScorer(BaseScorer):
    """A score given as one function of pooled features and labels, with the scorer contract.

    The way to add a score: write ``score_func(features, codes) -> float``
    (higher is better) and wrap it, as scikit-learn's ``SelectKBest`` takes a
    ``score_func``. ``fit`` validates the input, scores the training texts and
    refits the function on ``n_permutations`` shuffles of the labels for the
    chance level; :func:`~sklearn_ntps.scores.registry.register_score` makes it
    a column of the report and a choice of ``select``.

    Parameters
    ----------
    score_func : callable
        ``score_func(features, codes)``: ``features`` a float64 array of
        shape (n_texts, n_features), ``codes`` the labels as ``0 ..
        n_classes - 1``. Returns a float, higher is better.
    name : str, default=None
        The score's name in messages; None takes the function's.
    n_permutations : int, default=30
        Shuffles of the labels scored after ``fit`` for the chance level; 0
        skips it.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    score_ : float
        The function's value on the training data.
    chance_ : float
        Its mean over the shuffled labels.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        Its value on each shuffle.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.base import FunctionScorer
    >>> def class_distance(X, codes):
    ...     means = np.array([X[codes == c].mean(axis=0) for c in np.unique(codes)])
    ...     return float(np.linalg.norm(means[0] - means[1]))
    >>> X = np.array([[0.0], [1.0], [4.0], [5.0]])
    >>> scorer = FunctionScorer(score_func=class_distance, n_permutations=0)
    >>> scorer.fit(X, [0, 0, 1, 1]).score_
    4.0
    """

    _parameter_constraints: dict = {
        "score_func": [callable], "name": [None, str], **CHANCE_CONSTRAINTS}

    def __init__(self, *, score_func=None, name=None, n_permutations=N_PERMUTATIONS,
                 random_state=0):
        self.score_func = score_func
        self.name = name
        self.n_permutations = n_permutations
        self.random_state = random_state

    @property
    def _name(self):
        return self.name or getattr(self.score_func, "__name__", "The score")

    def _state(self, features):
        return features

    def _from_labels(self, state, codes):
        return float(self.score_func(state, codes))
