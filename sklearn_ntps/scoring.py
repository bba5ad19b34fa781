"""Stage 4 of the data flow: subspaces -> score.

``NTPS(k) = ||P_V U||_F^2 / ||U||_F^2`` (variant ``"paper"``), where ``V`` spans
the top-k autoregressive subspace and ``U`` holds the top ``min(k, C)``
perception directions; and the scale-free ``"whitened"`` variant
``NTPS_w(k) = ||Q^T M||_F^2 / ||M||_F^2`` with ``M = Sxx^{-1/2} Sxy`` and ``Q``
an orthonormal basis of ``Sxx^{1/2} V``. See ``docs/mathematics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.utils import check_consistent_length

from .moments import Moments, compute_moments
from .subspaces import Whitening, nested_basis, top_generalized_eigenvectors, whiten

VARIANTS = ("paper", "whitened")


def resolve_n_components(n_components, n_features: int) -> int:
    """Turn ``n_components`` (int k, or a fraction of ``n_features``) into k."""
    if isinstance(n_components, (bool, np.bool_)):
        raise ValueError(f"n_components must be an int or a float, got {n_components!r}.")
    if isinstance(n_components, Integral):
        if not 1 <= n_components <= n_features:
            raise ValueError(
                f"n_components={n_components} is out of range: it must be between 1 "
                f"and n_features={n_features}, or a float in (0, 1]."
            )
        return int(n_components)
    frac = float(n_components)
    if not 0.0 < frac <= 1.0:
        raise ValueError(
            f"n_components={n_components!r} is out of range: a float must lie in (0, 1] "
            "(a fraction of n_features); use an int for a number of components."
        )
    return max(1, int(np.ceil(frac * n_features - 1e-9)))


@dataclass(frozen=True, eq=False)
class PerceptionSide:
    """What the labels make of the pooled features, computed once per data set.

    ``whitening`` decomposes ``Sxx = X^T X / n`` on its range; ``Sxy`` is
    ``X^T onehot(y) / n``; ``U`` (d, min(C, rank)) holds the perception
    directions, largest generalized eigenvalue of ``(Sxy Sxy^T, Sxx)`` first.
    """

    whitening: Whitening
    Sxy: np.ndarray
    U: np.ndarray


def perception_side(pooled, y_indices, n_classes, *, rtol=None) -> PerceptionSide:
    """Uncentred moments of pooled features and labels, and their directions."""
    n = pooled.shape[0]
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y_indices] = 1.0
    Sxx, Sxy = pooled.T @ pooled / n, pooled.T @ onehot / n
    wh = whiten(Sxx, rtol=rtol)
    if wh.rank == 0:
        raise ValueError("The pooled features are all zero: NTPS is undefined.")
    _, U = top_generalized_eigenvectors(Sxy, wh, n_classes)
    return PerceptionSide(wh, Sxy, U)


def autoregressive_subspace(moments: Moments, *, rtol=None):
    """All generalized eigenvectors of ``(C1 C1^T, C0)``, largest first.

    Returns ``(eigenvalues, V)`` with ``V`` of shape (n_features, rank(C0)).
    """
    C0, C1 = moments.autoregressive_covariances()
    if moments.n_pairs == 0 or not C0.any():
        raise ValueError(
            "No text has two or more tokens, so there is no next-token statistic: "
            "NTPS needs texts of at least two tokens."
        )
    return top_generalized_eigenvectors(C1, C0, rtol=rtol)


def curve_from_subspaces(perception: PerceptionSide, V, *, variant="paper",
                         nested=None) -> np.ndarray:
    """NTPS for every k = 1 .. d, given both sides.

    ``V`` (d, K) holds the autoregressive directions, most predictive first;
    for k > K the subspace stays ``span(V)`` (it already covers range(C0)).
    ``nested``, ``nested_basis(V)`` when the caller has it, spares computing
    it again for the paper variant (the whitened one needs the basis of
    ``Sxx^{1/2} V`` instead). ``curve[k - 1]`` is NTPS(k), in [0, 1].
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    d, K = V.shape
    ks_v = np.minimum(np.arange(1, d + 1), K)
    if variant == "paper":
        U = perception.U
        basis, dims = nested if nested is not None else nested_basis(V)
        # U's first min(k, C) columns against V's first k: a 2-D prefix sum.
        cols = np.minimum(np.arange(1, d + 1), U.shape[1]) - 1
        captured = np.cumsum(np.cumsum((basis.T @ U) ** 2, axis=0), axis=1)
        captured = np.vstack([np.zeros((1, U.shape[1])), captured])
        num = captured[dims[ks_v - 1], cols]
        den = np.cumsum((U**2).sum(axis=0))[cols]
    else:
        wh = perception.whitening
        M = wh.whitener.T @ perception.Sxy
        den = (M**2).sum()
        if den == 0:
            raise ValueError("The pooled features carry no label signal (Sxy = 0).")
        basis, dims = nested_basis((wh.basis * np.sqrt(wh.eigenvalues)).T @ V)
        captured = np.r_[0.0, np.cumsum(((basis.T @ M) ** 2).sum(axis=1))]
        num = captured[dims[ks_v - 1]]
    return np.clip(num / den, 0.0, 1.0)


def encode_labels(y) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, indices)``; NTPS needs at least two classes."""
    classes, indices = np.unique(np.asarray(y), return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            f"y has a single class ({classes[0]!r}); NTPS needs at least two classes."
        )
    return classes, indices.ravel()


def ntps_curve(X, y, *, variant="paper", rtol=None) -> np.ndarray:
    """NTPS of labelled texts for every subspace dimension k = 1 .. n_features.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        Token hidden states of each text, padding removed.
    y : array-like of shape (n_texts,)
        Class labels, at least two classes.
    variant : {"paper", "whitened"}, default="paper"
    rtol : float, default=None
        Covariance eigenvalues below ``rtol * max`` count as zero.

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
    moments = compute_moments(X)
    check_consistent_length(moments, y)
    classes, yi = encode_labels(y)
    _, V = autoregressive_subspace(moments, rtol=rtol)
    perception = perception_side(moments.pooled, yi, len(classes), rtol=rtol)
    return curve_from_subspaces(perception, V, variant=variant)


def ntps_score(X, y, *, n_components=0.25, variant="paper", rtol=None) -> float:
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
    variant : {"paper", "whitened"}, default="paper"
        ``"paper"`` is the score of Cheng et al. (2025); ``"whitened"`` is the
        scale-free variant: the share of a least-squares probe's explained
        label signal that a probe on the k autoregressive features keeps.
    rtol : float, default=None
        Eigenvalues of covariances below ``rtol * max`` count as zero;
        None uses ``n_features * eps``.

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
    >>> score = ntps_score(X, y, n_components=4)
    >>> 0.0 <= score <= 1.0
    True
    >>> ntps_score(X, y, n_components=16)  # the whole space: everything is captured
    1.0
    """
    moments = compute_moments(X)
    k = resolve_n_components(n_components, moments.n_features)
    return float(ntps_curve(moments, y, variant=variant, rtol=rtol)[k - 1])
