"""Stage 4 of the data flow: subspaces -> score.

``NTPS(k) = ||P_V U||_F^2 / ||U||_F^2`` (variant ``"paper"``), where ``V`` spans
the top-k autoregressive subspace and ``U`` holds the top ``min(k, C)``
perception directions; and the scale-free ``"whitened"`` variant
``NTPS_w(k) = ||Q^T M||_F^2 / ||M||_F^2`` with ``M = Sxx^{-1/2} Sxy`` and ``Q``
an orthonormal basis of ``Sxx^{1/2} V``. The same ``M`` and ``Q`` give the
excess squared loss of a probe on the k autoregressive features over the best
k-dimensional encoder. See ``docs/mathematics.md``.

Every covariance is formed under one :class:`Options`: optional centring
(least squares with an intercept), optional shrinkage, and a numerical floor
set by the precision of the hidden states. The public parameters are
validated once, by :data:`PARAMETER_CONSTRAINTS` (``validate_params`` for the
functions, ``_parameter_constraints`` for the estimators); a resolver per
option then turns a valid value into what the maths needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from numbers import Integral, Real

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.utils import check_consistent_length

from .._sklearn_compat import StrOptions, validate_params
from .._utils import one_blas_pool
from ..checks import NumberInterval, encode_labels, labellings_class_sums
from ..states.moments import compute_moments
from ..states.statistics import Moments
from .subspaces import (
    Whitening,
    nested_basis,
    nested_coordinates,
    regularize,
    top_generalized_eigenvectors,
    whiten,
)

# The default first: the order in which reports list the variants.
VARIANTS = ("whitened", "paper")
# The numerical floor, in unit roundoffs of the states' dtype. Two processes
# running the same float32 model disagree by ~50 roundoffs of a coordinate's
# RMS (SmolLM2, 30 blocks); 4096 roundoffs (2.4e-4 for float32) keep the score
# within 0.2% under relative noise of 1e-6 on the moments, for every variant and
# option, at 120 texts and at 1,000 alike (docs/validity.md). Half-precision
# states would ask for a floor above their own variance: it is capped at 10%.
_FLOOR_PER_ROUNDOFF = 4096.0
_FLOOR_CAP = 0.1
# Largest accepted rtol: above 1/eps(float64) the covariance is below the rounding of its floor.
_RTOL_MAX = 1.0 / float(np.finfo(np.float64).eps)


# The public parameters, declared once for the functions and the estimators:
# the only check of their types and ranges (a bool is no number here).
PARAMETER_CONSTRAINTS = {
    "n_components": [NumberInterval(Integral, 1, None, closed="left"),
                     NumberInterval(Real, 0, 1, closed="right")],
    "variant": [StrOptions(set(VARIANTS))],
    "centering": ["boolean"],
    "shrinkage": [None, StrOptions({"ledoit-wolf"}), NumberInterval(Real, 0, 1, closed="both")],
    "rtol": [None, NumberInterval(Real, 0, _RTOL_MAX, closed="both")],
}
_DATA_CONSTRAINTS = {"X": [Moments, "array-like"], "y": ["array-like"]}


def resolve_n_components(n_components, n_features: int) -> int:
    """Turn a valid ``n_components`` (int k, or a fraction of ``n_features``) into k.

    The type and range were checked by :data:`PARAMETER_CONSTRAINTS`; only an
    int above ``n_features``, which depends on the data, is left to reject.
    """
    if isinstance(n_components, Integral):
        if n_components > n_features:
            raise ValueError(
                f"n_components={n_components} is out of range: it must be between 1 "
                f"and n_features={n_features}, or a float in (0, 1]."
            )
        return int(n_components)
    return max(1, int(np.ceil(float(n_components) * n_features - 1e-9)))


def resolve_rtol(rtol, precision: float) -> float:
    """The numerical floor: a valid ``rtol``, or one set by the states' unit roundoff.

    ``None`` gives ``4096 * precision``, at most 0.1 (2.4e-4 for float32 or
    float64 states, 0.1 for bfloat16 and float16); 0 reproduces the authors'
    pseudo-inverse. Its upper bound in :data:`PARAMETER_CONSTRAINTS`, 1/eps,
    is where the floor ``rtol * diag(B)`` would drown ``B`` in float64 rounding.
    """
    if rtol is None:
        return min(_FLOOR_PER_ROUNDOFF * precision, _FLOOR_CAP)
    return float(rtol)


@dataclass(frozen=True)
class Options:
    """How covariances are formed: centring, shrinkage and the numerical floor.

    ``rtol`` here is resolved (a float); see :func:`resolve_rtol`.
    """

    centering: bool = False
    shrinkage: object = None
    rtol: float = 0.0

    def definite(self, intensity) -> bool:
        """Whether the floor or a shrinkage makes a covariance positive definite."""
        return self.rtol > 0 or intensity > 0

    def intensity(self, estimate) -> float:
        """The shrinkage intensity; ``estimate()`` gives Ledoit-Wolf's when asked for."""
        if self.shrinkage is None:
            return 0.0
        return float(estimate()) if self.shrinkage == "ledoit-wolf" else self.shrinkage


def make_options(*, centering=False, shrinkage=None, rtol=None, precision) -> Options:
    """Resolve valid public parameters (see :data:`PARAMETER_CONSTRAINTS`) into :class:`Options`.

    ``precision`` is the unit roundoff of the hidden states (``Moments.precision``).
    """
    # A number of any numeric type becomes a float; None and "ledoit-wolf" stay.
    shrinkage = shrinkage if shrinkage is None or isinstance(shrinkage, str) else float(shrinkage)
    return Options(bool(centering), shrinkage, resolve_rtol(rtol, precision))


@dataclass(frozen=True, eq=False)
class PerceptionSide:
    """What the labels make of the pooled features, computed once per data set.

    ``whitening`` decomposes the (regularised) ``Sxx`` on its range; ``Sxy`` is
    ``X^T onehot(y) / n``; ``U`` (d, min(C, rank)) holds the perception
    directions, largest generalized eigenvalue of ``(Sxy Sxy^T, Sxx)`` first.
    """

    whitening: Whitening
    Sxy: np.ndarray
    U: np.ndarray

    @cached_property
    def M(self) -> np.ndarray:
        """``Sxx^{-1/2} Sxy`` in the whitened coordinates: what a least-squares probe reads."""
        return self.whitening.whitener.T @ self.Sxy


def perception_side(pooled, y_indices, n_classes, *, options=Options()) -> PerceptionSide:
    """Moments of pooled features and labels (centred or not), and their directions."""
    X, wh = perception_whitening(pooled, options=options)
    return perception_from_labels(X, wh, y_indices, n_classes, options=options)


def perception_whitening(pooled, *, options=Options()):
    """The label-free part of the perception side: the features as read, and ``Sxx``'s whitening."""
    n = pooled.shape[0]
    X = pooled - pooled.mean(axis=0) if options.centering else pooled
    Sxx = X.T @ X / n
    alpha = options.intensity(lambda: ledoit_wolf_shrinkage(X, assume_centered=True))
    raw = np.einsum("ij,ij->j", pooled, pooled) / n
    wh = whiten(regularize(Sxx, shrinkage=alpha, floor=options.rtol, scale=raw),
                definite=options.definite(alpha))
    if wh.rank == 0:
        raise ValueError("The pooled features are all zero (or constant, when centred): "
                         "NTPS is undefined.")
    return X, wh


def perception_from_labels(X, wh, y_indices, n_classes, *, options=Options()) -> PerceptionSide:
    """``Sxy`` and the perception directions of one labelling, on a given whitening."""
    n = X.shape[0]
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y_indices] = 1.0
    Sxy = X.T @ onehot / n
    # Centred, the columns of Sxy sum to zero: rank C - 1, and a C-th direction
    # would be an arbitrary null direction that the paper variant weighs in.
    _, U = top_generalized_eigenvectors(Sxy, wh, n_classes - options.centering)
    return PerceptionSide(wh, Sxy, U)


def permuted_ntps(fit: Fit, pooled, labellings, n_classes, k, *, variant, options) -> np.ndarray:
    """NTPS(k) of a fitted autoregressive subspace for each of several labellings.

    The labels move the perception side only, and only through ``Sxy``: the
    whitening of ``Sxx`` and the subspace are the fit's. So the whitened
    variant reads, per labelling, the class sums of the whitened features and
    of their coordinates in the subspace (``O(n (r + k))``); the paper variant
    solves its small eigenproblem again. Each value equals what a fit on that
    labelling gives (a test holds them equal).
    """
    wh = fit.perception.whitening
    X = pooled - pooled.mean(axis=0) if options.centering else pooled
    out = np.empty(len(labellings))
    if variant == "whitened":
        # ||Q_k^T M||^2 / ||M||^2 with M = B^T onehot / n: the 1 / n cancels.
        basis, dims = nested_basis(wh.root.T @ fit.V[:, :k])
        B = X @ wh.whitener
        A = B @ basis[:, : dims[-1]]
        # Both sides' class sums, for every labelling, in one sparse product.
        sums = labellings_class_sums(np.hstack([B, A]), labellings, n_classes)[0]
        squares = (sums**2).reshape(len(labellings), n_classes, -1)
        dens = squares[..., : B.shape[1]].sum(axis=(1, 2))
        nums = squares[..., B.shape[1]:].sum(axis=(1, 2))
        for i, (num, den) in enumerate(zip(nums, dens)):
            out[i] = min(max(num / den, 0.0), 1.0) if den > 0 else np.nan
        return out
    basis = fit.components(k)
    for i, codes in enumerate(labellings):
        U = perception_from_labels(X, wh, codes, n_classes, options=options).U
        U = U[:, : min(k, U.shape[1])]
        den = np.sum(U**2)
        out[i] = min(max(np.sum((basis.T @ U) ** 2) / den, 0.0), 1.0) if den > 0 else np.nan
    return out


def autoregressive_subspace(moments: Moments, *, options=Options()):
    """All generalized eigenvectors of ``(C1 C1^T, C0)``, largest first.

    Returns ``(eigenvalues, V)`` with ``V`` of shape (n_features, rank(C0)).
    """
    C0, C1, n = moments.c0, moments.c1, moments.n_pairs
    if n == 0:
        raise ValueError(
            "No text has two or more tokens, so there is no next-token statistic: "
            "NTPS needs texts of at least two tokens."
        )
    if not C0.any():
        raise ValueError(
            "Every next-token context is zero (the hidden states before each text's last "
            "token are all zero), so there is no next-token statistic: NTPS is undefined."
        )
    raw = np.diag(C0) / n
    if options.centering:
        if not moments.has_first_order:
            raise ValueError(
                "Centring needs the sums of the contexts and next tokens (Moments.context_sum, "
                "target_sum); compute the moments with compute_moments or "
                "HFEmbeddingTransformer(output='tokens')."
            )
        mean_context = moments.context_sum / n
        C0 = C0 - n * np.outer(mean_context, mean_context)
        C1 = C1 - np.outer(mean_context, moments.target_sum)
    C0, C1 = C0 / n, C1 / n
    alpha = options.intensity(lambda: rblw_shrinkage(C0, n))
    C0 = regularize(C0, shrinkage=alpha, floor=options.rtol, scale=raw)
    eigenvalues, V = top_generalized_eigenvectors(C1, whiten(C0, definite=options.definite(alpha)))
    if V.shape[1] == 0:
        raise ValueError(
            "The next-token contexts are all equal, so their centred covariance C0 is zero: "
            "NTPS is undefined with centering=True and rtol=0 (use rtol > 0 or no centring)."
        )
    return eigenvalues, V


def rblw_shrinkage(S, n_samples: int) -> float:
    """Ledoit-Wolf shrinkage intensity of a covariance ``S`` whose samples are not kept.

    Ledoit-Wolf's intensity needs the samples' fourth moments; the contexts
    behind ``C0`` are streamed, not stored, so ``C0`` uses the Rao-Blackwellised
    Ledoit-Wolf intensity (Chen, Wiesel, Eldar, Hero, IEEE TSP 2010), which
    replaces them by their Gaussian value and needs ``S`` alone:
    ``((n - 2) / n tr(S^2) + tr(S)^2) / ((n + 2) (tr(S^2) - tr(S)^2 / d))``.
    """
    d = S.shape[0]
    tr, tr2 = np.trace(S), np.sum(S * S)
    spread = tr2 - tr**2 / d
    if spread <= 0:
        return 0.0
    return float(min(1.0, ((n_samples - 2) / n_samples * tr2 + tr**2) / ((n_samples + 2) * spread)))


def curve_from_subspaces(perception: PerceptionSide, V, *, variant="paper",
                         nested=None, captured=None) -> np.ndarray:
    """NTPS for every k = 1 .. d, given both sides.

    ``V`` (d, K) holds the autoregressive directions, most predictive first;
    for k > K the subspace stays ``span(V)`` (it already covers range(C0)).
    What the caller already has is not computed again: ``nested``,
    ``nested_basis(V)``, serves the paper variant, ``captured``, what
    :func:`_probe_captured` returns, the whitened one.
    ``curve[k - 1]`` is NTPS(k), in [0, 1].
    """
    d, K = V.shape
    ks_v = np.minimum(np.arange(1, d + 1), K)
    if variant == "paper":
        U = perception.U
        coords, dims = (nested[0].T @ U, nested[1]) if nested is not None \
            else nested_coordinates(V, U)
        # U's first min(k, C) columns against V's first k: a 2-D prefix sum.
        cols = np.minimum(np.arange(1, d + 1), U.shape[1]) - 1
        captured = np.cumsum(np.cumsum(coords**2, axis=0), axis=1)
        captured = np.vstack([np.zeros((1, U.shape[1])), captured])
        num = captured[dims[ks_v - 1], cols]
        den = np.cumsum((U**2).sum(axis=0))[cols]
    else:
        M = perception.M
        den = (M**2).sum()
        if den == 0:
            raise ValueError("The pooled features carry no label signal (Sxy = 0).")
        num = _probe_captured(perception, V) if captured is None else captured
    return np.clip(num / den, 0.0, 1.0)


def _probe_captured(perception: PerceptionSide, V) -> np.ndarray:
    """``||Q_k^T M||^2`` for every k = 1 .. d: the signal a probe on ``V_k^T x`` explains."""
    wh = perception.whitening
    d, K = V.shape
    coords, dims = nested_coordinates(wh.root.T @ V, perception.M)
    captured = np.r_[0.0, np.cumsum((coords**2).sum(axis=1))]
    return captured[dims[np.minimum(np.arange(1, d + 1), K) - 1]]


def excess_loss_curve(perception: PerceptionSide, V, *, captured=None) -> np.ndarray:
    """Excess squared loss of a probe on ``V_k^T x`` over the best k-dim encoder, every k.

    With ``M = Sxx^{-1/2} Sxy`` and ``Q_k`` an orthonormal basis of
    ``Sxx^{1/2} V_k``, the least-squares probe on the k autoregressive features
    loses ``||M||^2 - ||Q_k^T M||^2`` of the one-hot targets' mean squared
    error, the best rank-k probe (reduced-rank regression) loses
    ``||M||^2 - sum of the top k squared singular values of M``; the excess
    is the difference, ``>= 0``, and ``||M||^2 (1 - NTPS_w(k))`` once k covers
    the classes. Per text, summed over the C one-hot outputs.
    """
    d = V.shape[0]
    s2 = np.linalg.svd(perception.M, compute_uv=False) ** 2
    best = np.cumsum(np.r_[s2, np.zeros(max(0, d - s2.shape[0]))])[:d]
    if captured is None:
        captured = _probe_captured(perception, V)
    return np.maximum(best - captured, 0.0)


@dataclass(frozen=True, eq=False)
class Fit:
    """Both sides of NTPS for one data set, from one set of eigendecompositions.

    The whitened curve and the excess loss share ``captured``, so asking for
    both costs one orthonormal basis of ``Sxx^{1/2} V``, not two.
    """

    eigenvalues: np.ndarray
    V: np.ndarray
    perception: PerceptionSide

    def components(self, k) -> np.ndarray:
        """Orthonormal basis (d, <= k) of the top-k autoregressive subspace."""
        # The basis of a prefix of V is the prefix of the whole one's: factor no more.
        basis, dims = nested_basis(self.V[:, :k])
        return basis[:, : dims[-1]]

    @cached_property
    def captured(self) -> np.ndarray:
        """``||Q_k^T M||^2`` for every k = 1 .. d: the signal a probe on ``V_k^T x`` explains.

        Computed once, shared by the whitened curve and the excess loss.
        """
        return _probe_captured(self.perception, self.V)

    def curve(self, variant) -> np.ndarray:
        """NTPS for every k = 1 .. d (:func:`curve_from_subspaces`).

        Parameters
        ----------
        variant : {"whitened", "paper"}
            Which NTPS; the whitened one reuses :attr:`captured`.

        Returns
        -------
        ndarray of shape (d,)
            ``curve[k - 1]`` is NTPS(k), in [0, 1].
        """
        return curve_from_subspaces(self.perception, self.V, variant=variant,
                                    captured=self.captured if variant == "whitened" else None)

    def excess_loss(self) -> np.ndarray:
        """Excess squared loss of a probe on ``V_k^T x`` over the best k-dim encoder, every k.

        Returns
        -------
        ndarray of shape (d,)
            :func:`excess_loss_curve` for k = 1 .. d, each ``>= 0``.
        """
        return excess_loss_curve(self.perception, self.V, captured=self.captured)


def fit_ntps(moments: Moments, y_indices, n_classes, *, options: Options) -> Fit:
    """Solve both sides once; every variant and every k are then read off cheaply."""
    eigenvalues, V = autoregressive_subspace(moments, options=options)
    perception = perception_side(moments.pooled, y_indices, n_classes, options=options)
    return Fit(eigenvalues, V, perception)


def fit_labelled(X, y, *, centering=False, shrinkage=None, rtol=None):
    """The fit :func:`ntps_score` and :func:`ntps_curve` share.

    Moments of ``X``, labels encoded (at least two classes: where the score
    is computed is where they are counted), options resolved from valid
    parameters, both sides solved. The estimators check their labels as
    every scorer does (:func:`~sklearn_ntps.checks.check_labelled`).

    Returns
    -------
    moments : Moments
    classes : ndarray of shape (n_classes,)
    options : Options
    fit : Fit

    Examples
    --------
    >>> from sklearn_ntps.datasets import make_token_states
    >>> from sklearn_ntps.scores.ntps import fit_labelled
    >>> X, y = make_token_states("predictable")
    >>> moments, classes, options, fit = fit_labelled(X, y, rtol=0)
    >>> classes.tolist(), options.rtol, fit.curve("whitened").shape
    ([0, 1, 2], 0.0, (8,))
    """
    moments = compute_moments(X)
    check_consistent_length(moments, y)
    classes, yi = encode_labels(y)
    options = make_options(centering=centering, shrinkage=shrinkage, rtol=rtol,
                           precision=moments.precision)
    return moments, classes, options, fit_ntps(moments, yi, len(classes), options=options)


@validate_params({**_DATA_CONSTRAINTS, **{k: v for k, v in PARAMETER_CONSTRAINTS.items()
                                          if k != "n_components"}},
                 prefer_skip_nested_validation=True)
@one_blas_pool()
def ntps_curve(X, y, *, variant="whitened", centering=False, shrinkage=None,
               rtol=None) -> np.ndarray:
    """NTPS of labelled texts for every subspace dimension k = 1 .. n_features.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        Token hidden states of each text, padding removed.
    y : array-like of shape (n_texts,)
        Class labels, at least two classes.
    variant : {"whitened", "paper"}, default="whitened"
    centering : bool, default=False
    shrinkage : None, "ledoit-wolf" or float, default=None
    rtol : float, default=None
        See :func:`ntps_score`.

    Returns
    -------
    ndarray of shape (n_features,)
        ``curve[k - 1]`` is ``ntps_score(X, y, n_components=k)``.

    Examples
    --------
    >>> from sklearn_ntps import ntps_curve
    >>> from sklearn_ntps.datasets import make_token_states
    >>> X, y = make_token_states("predictable")
    >>> ntps_curve(X, y, variant="whitened").round(2)
    array([0.43, 0.82, 0.99, 0.99, 0.99, 1.  , 1.  , 1.  ])
    """
    fit = fit_labelled(X, y, centering=centering, shrinkage=shrinkage, rtol=rtol)[3]
    return fit.curve(variant)


@validate_params({**_DATA_CONSTRAINTS, **PARAMETER_CONSTRAINTS},
                 prefer_skip_nested_validation=True)
@one_blas_pool()
def ntps_score(X, y, *, n_components=0.25, variant="whitened", centering=False, shrinkage=None,
               rtol=None) -> float:
    """Next Token Perception Score of labelled texts from their hidden states.

    How much the subspace a linear model learns for next-token prediction
    overlaps the one a linear model learns for the labels.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        Token hidden states of each text, padding removed. Texts with a
        single token count for the perception side only.
    y : array-like of shape (n_texts,)
        Class label of each text (at least two classes).
    n_components : int or float, default=0.25
        Dimension k of the autoregressive subspace: an int, or a float in
        (0, 1] taken as a fraction of n_features (rounded up).
    variant : {"whitened", "paper"}, default="whitened"
        ``"whitened"`` is the scale-free variant: the share of a
        least-squares probe's explained label signal that a probe on the k
        autoregressive features keeps; ``"paper"`` is the score of Cheng et
        al. (2025). The default follows the study of docs/validity.md.
    centering : bool, default=False
        Fit both linear problems with an intercept: centre the pooled
        features, and the contexts and next tokens of the autoregressive
        regression. The paper uses uncentred moments (False).
    shrinkage : None, "ledoit-wolf" or float in [0, 1], default=None
        Shrink ``Sxx`` and ``C0`` towards a scaled identity, by Ledoit-Wolf's
        intensity or by this one; it matters when there are fewer texts than
        features.
    rtol : float, default=None
        Numerical floor: ``rtol * diag(B)`` is added to ``Sxx`` and ``C0``.
        None sets it from the precision of the states (4096 unit roundoffs,
        at most 0.1: 2.4e-4 for float32 or float64 arrays, which are taken as
        upcast float32); 0 is the authors' pseudo-inverse on the range.

    Returns
    -------
    float
        NTPS in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import ntps_score
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(rng.integers(2, 9), 16)) for _ in range(60)]
    >>> y = np.arange(60) % 3
    >>> round(ntps_score(X, y, n_components=4), 3)  # noise: about k / n_features
    0.2
    >>> ntps_score(X, y, n_components=16)  # the whole space: everything is captured
    1.0
    """
    moments, _, _, fit = fit_labelled(X, y, centering=centering, shrinkage=shrinkage, rtol=rtol)
    k = resolve_n_components(n_components, moments.n_features)
    return float(fit.curve(variant)[k - 1])
