"""The NTPS estimators on the scorer contract of :mod:`sklearn_ntps.scores.base`.

NTPS reads token moments; its label-free state is the moments and the resolved
options, and the fit it solves is shared with the shuffles of the chance level
(:func:`~sklearn_ntps.scores.ntps.permuted_ntps`). ``_parameter_constraints``
alone validates the parameters. ``partial_fit`` streams moments, which are sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    clone,
)
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_consistent_length
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._sklearn_compat import HasMethods, _fit_context
from .._utils import one_blas_pool
from .._warnings import warn_at_caller
from ..checks import check_labelled, encode_labels
from ..states.moments import compute_moments
from ..states.statistics import Moments
from .base import BaseScorer
from .chance import CHANCE_CONSTRAINTS, N_PERMUTATIONS, ChanceLevelWarning
from .ntps import (
    PARAMETER_CONSTRAINTS,
    Fit,
    Options,
    curve_from_subspaces,
    fit_ntps,
    make_options,
    perception_side,
    permuted_ntps,
    resolve_n_components,
)

# partial_fit's stream: its moments, its labels, the classes its first call declared.
_STREAM = ("moments_", "_y_stream", "_declared_classes")


@dataclass
class _State:
    """What the labels do not move: the moments and resolved options; the fit once solved."""

    moments: Moments
    options: Options
    fit: Fit | None = None


class _NTPSBase(BaseScorer):
    """Fit the autoregressive subspace and the NTPS curve of the training texts."""

    _parameter_constraints: dict = {**PARAMETER_CONSTRAINTS, **CHANCE_CONSTRAINTS}
    _reads = "tokens"
    _name = "NTPS"

    def __sklearn_is_fitted__(self):
        # A partial_fit stream that holds one class so far has no score yet.
        return hasattr(self, "components_")

    def _reset(self):
        # fit starts over: no stream to continue (it would hold 2 d^2 floats).
        for name in _STREAM:
            self.__dict__.pop(name, None)

    @one_blas_pool()
    def _partial_fit_ntps(self, X, y, classes):
        """Add a batch to the stream; refit once the stream holds two classes.

        Returns the stream's moments and labels when it was refitted, else None.
        """
        moments, y, declared = self._extend_stream(X, y, classes)
        # Two classes are the score's need, not each batch's: count them in the stream.
        fitted = encode_labels(y, min_classes=1)[0].size >= 2
        if fitted:
            self._fit_checked(moments, *check_labelled(moments, y, estimator=self))
        self.moments_, self._y_stream, self._declared_classes = moments, y, declared
        self.n_features_in_ = moments.n_features
        return fitted

    def _state(self, moments):
        return _State(moments, make_options(centering=self.centering, shrinkage=self.shrinkage,
                                            rtol=self.rtol, precision=moments.precision))

    def _fit_score(self, state, codes):
        moments, self.options_ = state.moments, state.options
        d = moments.n_features
        k = resolve_n_components(self.n_components, d)
        fit = state.fit = fit_ntps(moments, codes, len(self.classes_), options=state.options)
        curve = fit.curve(self.variant)

        self.n_features_in_ = d
        self.n_components_ = k
        self.ar_eigenvalues_ = fit.eigenvalues
        # Orthonormal rows spanning the top-k subspace, like PCA's components_;
        # fewer than k rows when C0 has rank < k (then the whole range of C0).
        self.components_ = fit.components(k).T
        self.perception_components_ = fit.perception.U[:, :k].T
        self.ntps_curve_ = curve
        self.ntps_ = float(curve[k - 1])
        self.excess_loss_curve_ = fit.excess_loss()
        self.excess_loss_ = float(self.excess_loss_curve_[k - 1])
        return self.ntps_

    def _from_labellings(self, state, labellings):
        # The shuffles share the fit's eigendecompositions: the labels move Sxy alone.
        return permuted_ntps(state.fit, state.moments.pooled, labellings, len(self.classes_),
                             self.n_components_, variant=self.variant, options=self.options_)

    def _score_new(self, pooled, codes):
        perception = perception_side(pooled, codes, int(codes.max()) + 1, options=self.options_)
        fit_basis = self.components_.T
        k = fit_basis.shape[1]
        curve = curve_from_subspaces(perception, fit_basis, variant=self.variant,
                                     nested=(fit_basis, np.arange(1, k + 1)))
        return float(curve[k - 1])

    def _warn_fitted(self, moments, codes):
        n, d, k = len(moments), moments.n_features, self.n_components_
        n_classes = len(self.classes_)
        if n > k:
            self._warn_at_chance("NTPS", n, d, n_classes, advice=(
                f"More texts per class would help, or a smaller k (n_components, now {k})."))
            return
        chance = "" if not np.isfinite(self.chance_) else (
            f" (here {self.score_:.3f}, and {self.chance_:.3f} +- {self.chance_std_:.2g} "
            "on shuffled labels)")
        warn_at_caller(
            f"NTPS at k = {k} of d = {d} dimensions from n = {n} texts ({n_classes} classes): "
            "with no more texts than k, the few directions the labels define fit inside "
            "almost any k-dimensional subspace, so NTPS sits near its random-label "
            f"ceiling{chance}. Use many more texts than k, or a smaller n_components.",
            ChanceLevelWarning)

    def _extend_stream(self, X, y, classes):
        """The moments and labels of every batch given to partial_fit, this one last.

        And the stream's classes: those given on its first call, which later
        batches' labels must lie in and later ``classes`` must equal.
        """
        batch = compute_moments(X)
        check_consistent_length(batch, y)
        name = type(self).__name__
        first = not hasattr(self, "moments_")
        if first and hasattr(self, "n_features_in_"):
            raise ValueError(
                f"This {name} was fitted with fit, which keeps no moments to add to; "
                "partial_fit continues a stream of partial_fit calls. Start one from an "
                "unfitted copy (sklearn.base.clone)."
            )
        if not first:
            self._check_n_features(batch.n_features)
        declared = None if first else self._declared_classes
        known, codes = encode_labels(y, declared if classes is None else classes,
                                     min_classes=1 if classes is None else 2)
        if classes is not None:
            if not first and (declared is None or not np.array_equal(known, declared)):
                was = "none" if declared is None else f"classes={declared.tolist()}"
                raise ValueError(f"partial_fit got classes={known.tolist()}, but this {name}'s "
                                 f"stream was given {was} on the first call: classes are fixed "
                                 "when it starts.")
            declared = known
        labels = known[codes]  # the batch's labels, 1-D
        check_classification_targets(labels)
        if first:
            return batch, labels, declared
        return self.moments_ + batch, np.concatenate([self._y_stream, labels]), declared

    def _check_fitted(self):
        if hasattr(self, "moments_") and not hasattr(self, "components_"):
            raise NotFittedError(
                f"This {type(self).__name__}'s partial_fit stream holds a single class so "
                f"far ({self._y_stream.tolist()[0]!r}); NTPS is computed once it holds two."
            )
        check_is_fitted(self)

    def _check_n_features(self, n_features):
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )


class NTPSScorer(_NTPSBase):
    """Next Token Perception Score of a layer's hidden states for a labelled task.

    ``fit`` learns the top-k autoregressive subspace (the span of the optimal
    rank-k linear next-token predictor's encoder) from the training texts and
    scores them; ``score`` keeps that subspace and measures how much of the
    perception subspace of new labelled texts it holds. Higher is better, so
    the scorer plugs into ``cross_val_score`` and ``GridSearchCV`` (over
    layers or models in a Pipeline with ``HFEmbeddingTransformer``).

    Parameters
    ----------
    n_components : int or float, default=0.25
        Dimension k of the autoregressive subspace: an int, or a float in
        (0, 1] taken as a fraction of n_features (rounded up).
    variant : {"whitened", "paper"}, default="whitened"
        ``"whitened"``: scale-free; the share of a least-squares probe's
        explained label signal that a probe on the k autoregressive features
        keeps. ``"paper"``: ``||P_V U||^2 / ||U||^2`` as in Cheng et al.
        (2025). The default was chosen by the pre-registered rule of
        docs/validity.md: mean Spearman with held-out probe accuracy across
        layers over 30 (model, data set) tasks, +0.57 for the whitened score,
        -0.38 for the paper's, at k = 0.25.
    centering : bool, default=False
        Fit both linear problems with an intercept (centred pooled features,
        contexts and next tokens); the paper's moments are uncentred.
    shrinkage : None, "ledoit-wolf" or float in [0, 1], default=None
        Shrink ``Sxx`` and ``C0`` towards a scaled identity.
    rtol : float, default=None
        Numerical floor added to ``Sxx`` and ``C0`` as ``rtol * diag``; None
        sets it from the precision of the hidden states (see
        :func:`~sklearn_ntps.ntps_score`), 0 is the authors' pseudo-inverse.
    n_permutations : int, default=30
        Shuffles of the labels scored after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it. They share the fit's
        eigendecompositions: the labels move ``Sxy`` alone.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.

    Attributes
    ----------
    ntps_ : float
        NTPS of the training texts at ``n_components_``; ``score_`` is the same.
    chance_ : float
        The mean of ``ntps_`` over the shuffled labels: NTPS with labels that
        say nothing about the texts. With ``n <= k`` texts it is near 1.
    chance_std_ : float
        Their standard deviation.
    chance_scores_ : ndarray of shape (n_permutations,)
        NTPS of each shuffle, in the fitted subspace.
    ntps_curve_ : ndarray of shape (n_features_in_,)
        NTPS of the training texts for every k; ``ntps_curve_[k - 1]`` is NTPS(k).
    excess_loss_ : float
        Excess squared loss, on the training texts, of a least-squares probe
        on the k autoregressive features over the best k-dimensional linear
        encoder for the labels (per text, summed over one-hot outputs).
    excess_loss_curve_ : ndarray of shape (n_features_in_,)
        ``excess_loss_`` for every k.
    components_ : ndarray of shape (n_components_, n_features_in_)
        Orthonormal basis (rows) of the top-k autoregressive subspace.
    ar_eigenvalues_ : ndarray of shape (rank(C0),)
        Generalized eigenvalues of ``(C1 C1^T, C0)``, decreasing.
    perception_components_ : ndarray of shape (min(k, n_classes - centering), n_features_in_)
        Perception directions ``U`` (rows), normalised so ``u^T Sxx u = 1``.
    options_ : Options
        Centring, shrinkage and the resolved numerical floor.
    classes_ : ndarray of shape (n_classes,)
    n_components_ : int
        The resolved k.
    n_features_in_ : int
    moments_ : Moments
        After :meth:`partial_fit` only: the summed moments of every batch so far.

    See Also
    --------
    ntps_score : the same score as a function.
    NTPSSubspaceProbe : a classifier on the autoregressive subspace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import NTPSScorer
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(rng.integers(2, 9), 16)) for _ in range(80)]
    >>> y = np.arange(80) % 2
    >>> scorer = NTPSScorer(n_components=4).fit(X[:60], y[:60])
    >>> scorer.components_.shape
    (4, 16)
    >>> round(scorer.ntps_, 3), round(scorer.score(X[60:], y[60:]), 3)
    (0.269, 0.096)
    """

    def __init__(self, *, n_components=0.25, variant="whitened", centering=False, shrinkage=None,
                 rtol=None, n_permutations=N_PERMUTATIONS, random_state=0):
        self.n_components = n_components
        self.variant = variant
        self.centering = centering
        self.shrinkage = shrinkage
        self.rtol = rtol
        self.n_permutations = n_permutations
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Add a batch of labelled texts, and refit on every batch given so far.

        The moments are sums, so the stream holds ``O(n d + d^2)`` numbers and
        ends in the fit that one call to ``fit`` on all the batches gives (to
        float64 rounding). Each call solves the eigenproblems again; ``fit``
        starts over and keeps no stream. A batch may hold a single class (a
        stream sorted by label): NTPS needs two, so the fitted attributes
        appear once the batches so far hold two.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
            Token hidden states of the batch's texts.
        y : array-like of shape (n_texts,)
            Their class labels.
        classes : array-like of shape (n_classes,), default=None
            Every label the stream may hold, at least two. Given on the first
            call, it fixes them: a later batch with another label, or a later
            call with other ``classes``, is an error. None accepts any label.
            ``classes_`` lists the labels of the batches so far, as ``fit`` on
            them would.

        Returns
        -------
        self : NTPSScorer
            The scorer, refitted on the stream.
        """
        self._partial_fit_ntps(X, y, classes)
        return self


def _estimator_has(method):
    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return est is None or hasattr(est, method)

    return check


class NTPSSubspaceProbe(ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin,
                        _NTPSBase):
    """Linear probe on the top-k autoregressive subspace of a layer.

    ``transform`` projects each text's pooled hidden state onto the
    orthonormal basis of the subspace; ``predict`` classifies those k
    coordinates with ``estimator``. Comparing its accuracy with a probe on all
    features shows what the next-token subspace keeps of the task.

    Parameters
    ----------
    n_components : int or float, default=0.25
        Dimension k of the autoregressive subspace: an int, or a float in
        (0, 1] taken as a fraction of n_features (rounded up).
    variant : {"whitened", "paper"}, default="whitened"
        ``"whitened"``: scale-free; the share of a least-squares probe's
        explained label signal that a probe on the k autoregressive features
        keeps. ``"paper"``: ``||P_V U||^2 / ||U||^2`` as in Cheng et al.
        (2025). The default was chosen by the pre-registered rule of
        docs/validity.md: mean Spearman with held-out probe accuracy across
        layers over 30 (model, data set) tasks, +0.57 for the whitened score,
        -0.38 for the paper's, at k = 0.25.
    centering : bool, default=False
        Fit both linear problems with an intercept (centred pooled features,
        contexts and next tokens); the paper's moments are uncentred.
    shrinkage : None, "ledoit-wolf" or float in [0, 1], default=None
        Shrink ``Sxx`` and ``C0`` towards a scaled identity.
    rtol : float, default=None
        Numerical floor added to ``Sxx`` and ``C0`` as ``rtol * diag``; None
        sets it from the precision of the hidden states (see
        :func:`~sklearn_ntps.ntps_score`), 0 is the authors' pseudo-inverse.
    n_permutations : int, default=30
        Shuffles of the labels scored after ``fit`` for the chance level
        (:mod:`sklearn_ntps.scores.chance`); 0 skips it. They share the fit's
        eigendecompositions: the labels move ``Sxy`` alone.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffles.
    estimator : classifier, default=None
        Fitted on the projected features; None means
        ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``
        (hidden states have a few huge coordinates, which slow lbfgs down).

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone of ``estimator``.
    classes_ : ndarray of shape (n_classes,)
    ntps_, ntps_curve_, excess_loss_, excess_loss_curve_, components_, ar_eigenvalues_,
    perception_components_, options_, n_components_, n_features_in_, moments_, chance_,
    chance_std_, chance_scores_
        As in :class:`NTPSScorer`, for the training texts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import NTPSSubspaceProbe
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(rng.integers(2, 9), 16)) for _ in range(80)]
    >>> y = np.arange(80) % 2
    >>> probe = NTPSSubspaceProbe(n_components=4).fit(X, y)
    >>> probe.transform(X[:3]).shape
    (3, 4)
    >>> probe.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **PARAMETER_CONSTRAINTS, **CHANCE_CONSTRAINTS,
        "estimator": [None, HasMethods(["fit", "predict"])],
    }

    def __init__(self, *, n_components=0.25, estimator=None, variant="whitened", centering=False,
                 shrinkage=None, rtol=None, n_permutations=N_PERMUTATIONS, random_state=0):
        self.n_components = n_components
        self.estimator = estimator
        self.variant = variant
        self.centering = centering
        self.shrinkage = shrinkage
        self.rtol = rtol
        self.n_permutations = n_permutations
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Learn the subspace, then fit ``estimator`` on the projected features.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
            Token hidden states per text.
        y : array-like of shape (n_texts,)
            Class labels, at least two classes.

        Returns
        -------
        self : NTPSSubspaceProbe
            The fitted probe.
        """
        return self._fit(X, y)

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None):
        """Add a batch of labelled texts; refit the subspace and ``estimator`` on all so far.

        As :meth:`NTPSScorer.partial_fit`; ``estimator`` is refitted on the
        projected features of every batch once the stream holds two classes.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
            Token hidden states of the batch's texts.
        y : array-like of shape (n_texts,)
            Their class labels.
        classes : array-like of shape (n_classes,), default=None
            Every label the stream may hold (see :meth:`NTPSScorer.partial_fit`).

        Returns
        -------
        self : NTPSSubspaceProbe
            The probe, refitted on the stream.
        """
        self._partial_fit_ntps(X, y, classes)
        return self

    def _fit_checked(self, moments, classes, codes):
        super()._fit_checked(moments, classes, codes)
        base = self.estimator
        if base is None:
            base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.estimator_ = clone(base).fit(moments.pooled @ self.components_.T, classes[codes])
        return self

    def transform(self, X):
        """Coordinates of each text's pooled state in the autoregressive subspace.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
            Token hidden states per text.

        Returns
        -------
        Z : ndarray of shape (n_texts, n_components_)
            The coordinates.
        """
        self._check_fitted()
        return self._check_input(X, reset=False) @ self.components_.T

    @property
    def _n_features_out(self):
        # get_feature_names_out: ntpssubspaceprobe0 .. ntpssubspaceprobe{k-1}.
        return self.components_.shape[0]

    def predict(self, X):
        """Predicted class of each text."""
        Z = self.transform(X)
        return self.estimator_.predict(Z)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of each text (if ``estimator`` has them)."""
        Z = self.transform(X)
        return self.estimator_.predict_proba(Z)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of ``estimator`` on the projected features."""
        Z = self.transform(X)
        return self.estimator_.decision_function(Z)
