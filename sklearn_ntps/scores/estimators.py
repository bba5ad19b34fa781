"""The NTPS estimators: thin wrappers that validate, call the stages, store ``_`` attributes.

They keep the contract of the peer scores of :mod:`sklearn_ntps.scores.peer_estimators`:
``fit(X, y)`` stores the training score in ``score_``, ``score(X, y)``
returns a float, higher is better. ``_parameter_constraints`` alone validates
the parameters; :func:`~sklearn_ntps.scores.ntps.fit_labelled`, ``ntps_score``'s fit too,
resolves them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    clone,
)
from sklearn.exceptions import DataConversionWarning, NotFittedError
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
from ..checks import encode_labels
from ..states.moments import compute_moments, pooled_features
from .chance import CHANCE_CONSTRAINTS, N_PERMUTATIONS, ChanceLevelWarning, ChanceMixin
from .ntps import (
    PARAMETER_CONSTRAINTS,
    curve_from_subspaces,
    fit_labelled,
    perception_side,
    permuted_ntps,
    resolve_n_components,
)

# partial_fit's stream: its moments, its labels, the classes its first call declared.
_STREAM = ("moments_", "_y_stream", "_declared_classes")


class _NTPSBase(ChanceMixin, BaseEstimator):
    """Fit the autoregressive subspace and the NTPS curve of the training texts."""

    _parameter_constraints: dict = {**PARAMETER_CONSTRAINTS, **CHANCE_CONSTRAINTS}

    def __sklearn_is_fitted__(self):
        # A partial_fit stream that holds one class so far has no score yet.
        return hasattr(self, "components_")

    @one_blas_pool()
    def _fit_ntps(self, X, y):
        # fit starts over: no stream to continue (it would hold 2 d^2 floats).
        for name in _STREAM:
            self.__dict__.pop(name, None)
        return self._fit_labelled(X, y)

    @one_blas_pool()
    def _partial_fit_ntps(self, X, y, classes):
        """Add a batch to the stream; refit once the stream holds two classes.

        Returns the stream's moments and labels when it was refitted, else None.
        """
        moments, y, declared = self._extend_stream(X, y, classes)
        # Two classes are the score's need, not each batch's: count them in the stream.
        fitted = encode_labels(y, min_classes=1)[0].size >= 2
        if fitted:
            self._fit_labelled(moments, y)
        self.moments_, self._y_stream, self._declared_classes = moments, y, declared
        self.n_features_in_ = moments.n_features
        return (moments, y) if fitted else None

    def _fit_labelled(self, X, y):
        moments, classes, self.options_, fit = fit_labelled(
            X, y, centering=self.centering, shrinkage=self.shrinkage, rtol=self.rtol,
            classifier=True)
        d = moments.n_features
        k = resolve_n_components(self.n_components, d)
        curve = fit.curve(self.variant)

        self.n_features_in_ = d
        self.n_components_ = k
        self.classes_ = classes
        self.ar_eigenvalues_ = fit.eigenvalues
        # Orthonormal rows spanning the top-k subspace, like PCA's components_;
        # fewer than k rows when C0 has rank < k (then the whole range of C0).
        self.components_ = fit.components(k).T
        self.perception_components_ = fit.perception.U[:, :k].T
        self.ntps_curve_ = curve
        self.ntps_ = self.score_ = float(curve[k - 1])
        self.excess_loss_curve_ = fit.excess_loss()
        self.excess_loss_ = float(self.excess_loss_curve_[k - 1])
        with warnings.catch_warnings():
            # fit_labelled has said it once if y is a column vector.
            warnings.simplefilter("ignore", DataConversionWarning)
            codes = encode_labels(y)[1]
        self._fit_chance(lambda shuffles: permuted_ntps(
            fit, moments.pooled, shuffles, len(classes), k, variant=self.variant,
            options=self.options_), codes)
        self._warn_ntps_at_chance(moments.pooled.shape[0], d, k, len(classes))
        return moments, y

    def _warn_ntps_at_chance(self, n, d, k, n_classes):
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

    def _pooled(self, X):
        if hasattr(self, "moments_") and not hasattr(self, "components_"):
            raise NotFittedError(
                f"This {type(self).__name__}'s partial_fit stream holds a single class so "
                f"far ({self._y_stream.tolist()[0]!r}); NTPS is computed once it holds two."
            )
        check_is_fitted(self)
        pooled = pooled_features(X)
        self._check_n_features(pooled.shape[1])
        return pooled

    def _check_n_features(self, n_features):
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is fitted "
                f"with {self.n_features_in_} features."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Inputs are sequences of per-text (n_tokens, n_features) arrays, a 3-D
        # array, or Moments: never a plain 2-D feature matrix.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        return tags


_PARTIAL_FIT_DOC = """Add a batch of labelled texts, and refit on every batch given so far.

        The moments are sums, so the stream holds ``O(n d + d^2)`` numbers and
        ends in the fit that one call to ``fit`` on all the batches gives (to
        float64 rounding). Each call solves the eigenproblems again; ``fit``
        starts over and keeps no stream. A batch may hold a single class (a
        stream sorted by label): NTPS needs two, so the fitted attributes
        appear once the batches so far hold two.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        y : array-like of shape (n_texts,)
        classes : array-like of shape (n_classes,), default=None
            Every label the stream may hold, at least two. Given on the first
            call, it fixes them: a later batch with another label, or a later
            call with other ``classes``, is an error. None accepts any label.
            ``classes_`` lists the labels of the batches so far, as ``fit`` on
            them would.

        Returns
        -------
        self
        """


_PARAMETERS_DOC = """
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
        Seeds the shuffles."""


class NTPSScorer(_NTPSBase):
    __doc__ = f"""Next Token Perception Score of a layer's hidden states for a labelled task.

    ``fit`` learns the top-k autoregressive subspace (the span of the optimal
    rank-k linear next-token predictor's encoder) from the training texts and
    scores them; ``score`` keeps that subspace and measures how much of the
    perception subspace of new labelled texts it holds. Higher is better, so
    the scorer plugs into ``cross_val_score`` and ``GridSearchCV`` (over
    layers or models in a Pipeline with ``HFEmbeddingTransformer``).

    Parameters
    ----------{_PARAMETERS_DOC}

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
    def fit(self, X, y):
        """Learn the autoregressive subspace and score the training texts.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
            Token hidden states per text (padding removed), a 3-D array of
            equal-length texts, or ``HFEmbeddingTransformer(output="tokens")``
            output. One-token texts count for the perception side only.
        y : array-like of shape (n_texts,)
            Class labels, at least two classes.

        Returns
        -------
        self : NTPSScorer
        """
        self._fit_ntps(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        self._partial_fit_ntps(X, y, classes)
        return self

    partial_fit.__doc__ = _PARTIAL_FIT_DOC

    @one_blas_pool()
    def score(self, X, y):
        """NTPS of ``(X, y)`` against the fitted autoregressive subspace.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        y : array-like of shape (n_texts,)

        Returns
        -------
        float
            NTPS in [0, 1] at the fitted k.
        """
        pooled = self._pooled(X)
        check_consistent_length(pooled, y)
        classes, yi = encode_labels(y)
        check_classification_targets(y)
        perception = perception_side(pooled, yi, len(classes), options=self.options_)
        fit_basis = self.components_.T
        k = fit_basis.shape[1]
        curve = curve_from_subspaces(perception, fit_basis, variant=self.variant,
                                     nested=(fit_basis, np.arange(1, k + 1)))
        return float(curve[k - 1])


def _estimator_has(method):
    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return est is None or hasattr(est, method)

    return check


class NTPSSubspaceProbe(ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin,
                        _NTPSBase):
    __doc__ = f"""Linear probe on the top-k autoregressive subspace of a layer.

    ``transform`` projects each text's pooled hidden state onto the
    orthonormal basis of the subspace; ``predict`` classifies those k
    coordinates with ``estimator``. Comparing its accuracy with a probe on all
    features shows what the next-token subspace keeps of the task.

    Parameters
    ----------{_PARAMETERS_DOC}
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
        y : array-like of shape (n_texts,)

        Returns
        -------
        self : NTPSSubspaceProbe
        """
        return self._fit_probe(*self._fit_ntps(X, y))

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None):
        stream = self._partial_fit_ntps(X, y, classes)
        return self if stream is None else self._fit_probe(*stream)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC

    def _fit_probe(self, moments, y):
        base = self.estimator
        if base is None:
            base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.estimator_ = clone(base).fit(moments.pooled @ self.components_.T, y)
        return self

    def transform(self, X):
        """Coordinates of each text's pooled state in the autoregressive subspace.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments

        Returns
        -------
        ndarray of shape (n_texts, n_components_)
        """
        pooled = self._pooled(X)
        return pooled @ self.components_.T

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
