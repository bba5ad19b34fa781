"""Leave-one-out accuracies of two cheap probes on a feature matrix: k-NN and ridge.

Peer scores of NTPS (re-exported by :mod:`sklearn_ntps.scores.peers`), numpy only;
each reads one 2-D feature matrix and its class labels in float64, checked
by :func:`~sklearn_ntps.checks.check_features`, and refits nothing. The
ridge probe costs one SVD of the centred features; k-NN the pairwise
distances, O(n^2 d), in blocks of rows. They are written from the papers:

* k-NN: Sorkhei, Matsoukas, Fredin Haslum, Konuk, Smith, TMLR 2025, "k-NN as a
  Simple and Effective Estimator of Transferability"; the ``KNN`` estimator of
  transformer-ranker (Garbas, Ploner, Akbik, NAACL 2025 demos, "TransformerRanker:
  A Tool for Efficiently Finding the Best-Suited Language Models for Downstream
  Classification Tasks").
* Ridge probe: leave-one-out ridge regression in closed form (Golub, Heath,
  Wahba, Technometrics 1979; Rifkin, Lippert, 2007, "Notes on Regularized
  Least Squares"), as scikit-learn's ``RidgeClassifierCV`` selects its alpha.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from .._sklearn_compat import validate_params
from .._utils import log_grid
from ..checks import NumberInterval, check_features

__all__ = ["knn_accuracy", "knn_chance", "knn_from_labels", "knn_neighbours",
           "ridge_from_labellings", "ridge_from_labels", "ridge_loo_accuracy", "ridge_state"]

_EPS = float(np.finfo(np.float64).eps)

# Rows of squared distances computed at once: blocks of about 2^22 entries
# (32 MiB in float64) keep k-NN's memory O(block * n) rather than n^2.
_KNN_BLOCK_ENTRIES = 1 << 22


@validate_params({"features": ["array-like"], "y": ["array-like", None],
                  "n_neighbors": [NumberInterval(Integral, 1, None, closed="left")]},
                 prefer_skip_nested_validation=True)
def knn_accuracy(features, y, *, n_neighbors=3):
    """Leave-one-out k-nearest-neighbour accuracy of the features.

    Each sample ``i`` is classified by a majority vote of the classes of its
    ``k = n_neighbors`` nearest other samples (itself excluded), in Euclidean
    distance::

        knn_accuracy = 1/n sum_i [ argmax_c #{j in N_k(i) : y_j = c} == y_i ]

    with ``N_k(i)`` the ``k`` samples ``j != i`` nearest to ``i``. A tie between
    classes goes to the smallest class (in sorted label order), as in
    scikit-learn's ``KNeighborsClassifier`` and ``torch.mode``; a tie in distance
    at the ``k``-th neighbour to the sample that comes first. Nothing is refitted:
    it equals ``cross_val_score(KNeighborsClassifier(n_neighbors=k), X, y,
    cv=LeaveOneOut()).mean()`` (up to those distance ties), in one pass over the
    pairwise distances.

    This is the k-NN estimator of transformer-ranker (Garbas, Ploner, Akbik,
    "TransformerRanker: A Tool for Efficiently Finding the Best-Suited Language
    Models for Downstream Classification Tasks", NAACL 2025 demos; its ``KNN``
    class: ``k = 3``, Euclidean distance, the sample itself excluded, micro-F1,
    which is the accuracy); Sorkhei, Matsoukas, Fredin Haslum, Konuk, Smith, "k-NN as a
    Simple and Effective Estimator of Transferability", TMLR 2025, find such a plain k-NN accuracy a
    strong transferability estimate.

    The squared distances ``||a||^2 + ||b||^2 - 2 a.b`` are computed in float64,
    clipped at 0, in blocks of rows of about 2^22 entries: memory is
    ``O(block * n)``, time ``O(n^2 d)``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, read as given: the score is invariant to a global scale, a
        translation and a rotation of the features, not to rescaling single
        features.
    y : array-like of shape (n_samples,)
        Class labels.
    n_neighbors : int, default=3
        ``k``, at least 1 and below ``n_samples`` (each sample has ``n_samples - 1``
        others).

    Returns
    -------
    score : float
        The fraction of samples whose neighbours' vote gives their class, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.loo_probes import knn_accuracy
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> noise = rng.normal(size=(300, 8))
    >>> round(knn_accuracy(noise, y), 3)  # chance: 1 / 3
    0.313
    >>> round(knn_accuracy(noise + 3 * np.eye(3, 8)[y], y), 3)
    0.943
    """
    X, codes = check_features(features, y, score="k-NN accuracy")
    return knn_from_labels(knn_neighbours(X, n_neighbors), codes)


def knn_neighbours(X, n_neighbors) -> np.ndarray:
    """The ``k`` nearest other samples of each sample, ``(n, k)`` indices: what labels do not move.

    The label-free part of :func:`knn_accuracy`, computed once however many
    labellings (permutations for the chance level) are then scored.
    """
    n = X.shape[0]
    k = int(n_neighbors)
    if k >= n:
        raise ValueError(f"n_neighbors={k} must be below n_samples={n}: leaving one sample "
                         f"out leaves {n - 1} neighbour(s) to vote.")
    sq = np.einsum("ij,ij->i", X, X)
    block = max(1, min(n, _KNN_BLOCK_ENTRIES // n))
    out = np.empty((n, k), dtype=np.intp)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.arange(stop - start)
        D = X[start:stop] @ X.T
        D *= -2.0
        D += sq[start:stop, None]
        D += sq[None, :]
        np.maximum(D, 0.0, out=D)
        D[rows, rows + start] = np.inf  # itself excluded
        # The k smallest, with a tie at the k-th distance going to the first samples.
        kth = np.take_along_axis(D, np.argpartition(D, k - 1, axis=1)[:, k - 1:k], axis=1)
        nearer = D < kth
        tied = D == kth
        need = k - nearer.sum(axis=1, keepdims=True)
        chosen = nearer | (tied & (np.cumsum(tied, axis=1) <= need))
        out[start:stop] = np.nonzero(chosen)[1].reshape(-1, k)  # exactly k a row, row-major
    return out


def knn_from_labels(neighbours, codes) -> float:
    """The leave-one-out accuracy of the neighbours' majority vote (ties: the smallest class)."""
    n, _ = neighbours.shape
    n_classes = int(codes.max()) + 1
    votes = np.bincount((np.arange(n)[:, None] * n_classes + codes[neighbours]).ravel(),
                        minlength=n * n_classes).reshape(n, n_classes)
    return float(np.mean(votes.argmax(axis=1) == codes))  # the first max: the smallest class


def knn_chance(counts, n_neighbors) -> float:
    """The exact mean of :func:`knn_accuracy` over every permutation of the labels.

    Whatever the features, a sample's ``k`` neighbours are a fixed set of
    other samples; under a random permutation of the labels their labels are
    a uniform draw without replacement from the other ``n - 1`` labels. So
    the expected accuracy depends on the class counts alone: for a sample of
    class ``c``, ``t`` of its neighbours are of class ``c`` with the
    hypergeometric probability, and the vote is ``c`` when every smaller class
    has fewer than ``t`` of the others and every larger class at most ``t``
    (ties go to the smallest class), which a product of truncated binomial
    generating functions counts.

    Parameters
    ----------
    counts : array-like of int, shape (n_classes,)
        Samples per class, in class order.
    n_neighbors : int

    Returns
    -------
    float

    Examples
    --------
    >>> from sklearn_ntps.scores.loo_probes import knn_chance
    >>> knn_chance([5, 5], 1)  # the one neighbour is of your class 4 times in 9
    0.4444444444444444
    """
    from scipy.special import comb

    counts = np.asarray(counts, dtype=np.int64)
    n, k = int(counts.sum()), int(n_neighbors)
    total = comb(n - 1, k, exact=False)

    def ways(m, cap):
        # Coefficients of sum_{x <= cap} C(m, x) z^x: draws of x neighbours from a class of m.
        x = np.arange(k + 1)
        return np.where(x <= cap, comb(m, x, exact=False), 0.0)

    def times(a, b):
        return np.convolve(a, b)[: k + 1]

    expected = 0.0
    for t in range(1, k + 1):
        # Classes before c may draw at most t - 1, those after at most t: prefix and suffix
        # products of their generating functions serve every c at once.
        before = [np.eye(1, k + 1)[0]]
        for m in counts[:-1]:
            before.append(times(before[-1], ways(m, t - 1)))
        after = [np.eye(1, k + 1)[0]]
        for m in counts[:0:-1]:
            after.append(times(after[-1], ways(m, t)))
        after.reverse()
        for c, n_c in enumerate(counts):
            draws = times(before[c], after[c])
            expected += n_c / n * comb(n_c - 1, t, exact=False) * draws[k - t] / total
    return float(expected)


_RIDGE_ALPHAS = log_grid(-3, 3, 13)


@validate_params({"features": ["array-like"], "y": ["array-like", None],
                  "alphas": ["array-like"]},
                 prefer_skip_nested_validation=True)
def ridge_loo_accuracy(features, y, *, alphas=_RIDGE_ALPHAS):
    """Leave-one-out accuracy of a ridge linear probe, in closed form.

    The probe is scikit-learn's ``RidgeClassifier``: a ridge regression of the
    class indicators coded in ``{-1, 1}`` (for two classes one column, +1 for
    the second class) with an unpenalised intercept; it predicts the class of
    the largest output (for two classes, the second class where the output is
    positive). Its leave-one-out (LOO) predictions come without refits, for
    every ``alpha``, from one thin SVD ``Z = U diag(s) V^T`` of the centred
    features (Golub, Heath, Wahba, Technometrics 1979, "Generalized
    cross-validation as a method for choosing a good ridge parameter"; Rifkin,
    Lippert, 2007, "Notes on regularized least squares")::

        H = U diag(s^2 / (s^2 + alpha)) U^T + 1 1^T / n
        T_loo_i = (Yhat_i - h_ii T_i) / (1 - h_ii),   Yhat = H T

    with ``T`` the (n, n_outputs) targets and ``h_ii`` the diagonal of the hat
    matrix ``H``. ``alpha`` is the one of ``alphas`` with the smallest LOO mean
    squared error over all entries of ``T`` (the first on a tie), as
    ``RidgeClassifierCV(alphas=alphas)`` chooses its ``alpha_``; the score is
    the LOO accuracy at that ``alpha``, what refitting ``RidgeClassifier(alpha)``
    ``n`` times, each time without one sample, would give.

    Cost: one SVD, ``O(n d min(n, d))``, then ``O(n r K)`` per alpha (``r`` the
    rank, ``K`` the number of classes). Singular values below ``max(n, d) *
    eps`` of the largest (``eps`` the float64 machine epsilon) count as zero;
    ``1 - h_ii`` and the residuals are formed from ``alpha / (s^2 + alpha)``,
    so interpolating probes (``n <= d``, small ``alpha``) keep their accuracy.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, read as given.
    y : array-like of shape (n_samples,)
        Class labels.
    alphas : array-like of float > 0, default=np.logspace(-3, 3, 13)
        Candidate ridge penalties, in the units of the raw features as in
        scikit-learn (they are compared with the squared singular values of the
        centred features): the score is not invariant to the scale of the
        features unless the alphas are scaled with its square.

    Returns
    -------
    score : float
        The LOO accuracy at the chosen alpha, in [0, 1]. Invariant to a
        translation and a rotation of the features.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.loo_probes import ridge_loo_accuracy
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> noise = rng.normal(size=(300, 8))
    >>> round(ridge_loo_accuracy(noise, y), 3)  # chance: 1 / 3
    0.313
    >>> round(ridge_loo_accuracy(noise + 3 * np.eye(3, 8)[y], y), 3)
    0.963
    """
    return _ridge_loo(features, y, alphas)[0]


def _ridge_loo(features, y, alphas):
    """``(LOO accuracy, chosen alpha)`` of :func:`ridge_loo_accuracy`."""
    X, codes = check_features(features, y, score="The ridge probe")
    return ridge_from_labels(ridge_state(X, alphas), codes)


def ridge_state(X, alphas) -> tuple:
    """The label-free part of :func:`ridge_loo_accuracy`: one SVD of the centred features."""
    alphas = _check_alphas(alphas)
    n, d = X.shape
    U, s, _ = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    keep = s > max(n, d) * _EPS * s[0]
    U, s2 = U[:, keep], s[keep] ** 2
    U2 = U**2
    # U spans every centred direction: nothing lies outside it but rounding.
    spans_all = U.shape[1] == n - 1
    out_lev = np.zeros(n) if spans_all else np.maximum(1.0 - 1.0 / n - U2.sum(axis=1), 0.0)
    return alphas, U, s2, U2, spans_all, out_lev


def ridge_from_labels(state, codes) -> tuple:
    """``(LOO accuracy, chosen alpha)`` for one labelling, from :func:`ridge_state`."""
    scores, alphas = ridge_from_labellings(state, [codes])
    return float(scores[0]), float(alphas[0])


def ridge_from_labellings(state, labellings) -> tuple:
    """``(LOO accuracies, chosen alphas)`` of several labellings with the same classes.

    Their targets sit side by side, so each alpha costs one product with ``U``
    for all of them; each labelling still chooses its own alpha.
    """
    alphas, U, s2, U2, spans_all, out_lev = state
    n = U.shape[0]
    n_classes = int(max(c.max() for c in labellings)) + 1
    # RidgeClassifier's targets: LabelBinarizer(neg_label=-1), one column for two classes.
    T = -np.ones((len(labellings), n, n_classes))
    for T_i, codes in zip(T, labellings):
        T_i[np.arange(n), codes] = 1.0
    if n_classes == 2:
        T = T[:, :, 1:]
    width = T.shape[2]
    T = T.transpose(1, 0, 2).reshape(n, -1)  # (n, labellings x outputs)
    Tc = T - T.mean(axis=0)
    UtT = U.T @ Tc
    out_res = np.zeros_like(Tc) if spans_all else Tc - U @ UtT
    best_mse = np.full(len(labellings), np.inf)
    best_alpha = np.empty(len(labellings))
    loo = np.empty_like(T)
    for alpha in alphas:
        shrink = alpha / (s2 + alpha)  # 1 - s^2 / (s^2 + alpha), without the cancellation
        # T - H T and 1 - h_ii, each read off the directions that alpha shrinks.
        residual = out_res + U @ (shrink[:, None] * UtT)
        loo_error = residual / (out_lev + U2 @ shrink)[:, None]
        mse = np.mean((loo_error**2).reshape(n, -1, width), axis=(0, 2))
        better = mse < best_mse  # the first alpha on a tie
        best_mse[better], best_alpha[better] = mse[better], alpha
        cols = np.repeat(better, width)
        loo[:, cols] = T[:, cols] - loo_error[:, cols]
    loo = loo.reshape(n, -1, width)
    predicted = (loo[:, :, 0] > 0).astype(int) if n_classes == 2 else loo.argmax(axis=2)
    codes = np.column_stack(labellings)
    return np.mean(predicted == codes, axis=0), best_alpha


def _check_alphas(alphas):
    """The candidate ridge penalties as a 1-D float array, each finite and > 0."""
    if isinstance(alphas, (str, bytes)):
        raise ValueError(f"alphas must be an array-like of positive floats, got {alphas!r}.")
    try:
        values = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"alphas must be an array-like of positive floats, "
                         f"got {alphas!r}.") from None
    if values.size == 0 or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError(f"alphas must be a non-empty array-like of finite floats > 0, "
                         f"got {alphas!r}.")
    return [float(a) for a in values]
