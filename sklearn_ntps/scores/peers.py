"""Peer transferability scores of a feature matrix.

LogME, H-score, TransRate, RankMe, and (from :mod:`sklearn_ntps.scores.loo_probes`)
leave-one-out k-NN and ridge probe accuracies.

Each score reads one 2-D feature matrix (rows are samples), and the class
labels where it needs them, in float64 (checked by
:func:`~sklearn_ntps.checks.check_features`); higher is better for all six.
LogME, H-score and RankMe cost one eigendecomposition or SVD of the features
(or of their covariance); TransRate needs none, only log-determinants of Gram
matrices. They are written from the papers (the probes' are in their module):

* LogME: You, Liu, Wang, Long, ICML 2021, "LogME: Practical Assessment of
  Pre-trained Models for Transfer Learning".
* H-score: Bao, Li, Huang, Zheng, ICIP 2019, "An information-theoretic approach
  to transferability in task transfer learning"; its shrunk form is the
  regularised H-score of Ibrahim, Ponomareva, Mazumder, 2022, "Newer is not
  always better: rethinking transferability metrics, their peculiarities,
  stability and performance".
* TransRate: Huang, Huang, Rong, Yang, Wei, ICML 2022, "Frustratingly Easy
  Transferability Estimation".
* RankMe: Garrido, Balestriero, Najman, LeCun, ICML 2023, "RankMe: Assessing the
  downstream performance of pretrained self-supervised representations by their rank".
"""


from __future__ import annotations

from numbers import Real

import numpy as np
from scipy.linalg import solve_triangular

from .._sklearn_compat import Interval, StrOptions, validate_params
from ..checks import NumberInterval, check_features, labellings_class_sums

__all__ = ["hscore", "hscore_from_labellings", "hscore_from_labels", "hscore_state", "logme",
           "logme_from_labellings", "logme_from_labels", "logme_state", "rankme", "transrate",
           "transrate_from_labels", "transrate_state"]

# LogME's evidence depends on alpha and beta through lam = alpha / beta and beta: for
# fixed lam the best beta is n / E(lam), which leaves a 1-D profile in t = log lam.
_LOGME_TOL = 1e-10
_LOGME_MAX_ITER = 200
_EPS = float(np.finfo(np.float64).eps)
# The smallest Gram eigenvalue, relative to the largest, that logme_state reads without an SVD.
_GRAM_CONDITION = 1e-6


def _logme_profile(t, s2, Z2, outside, floor, n):
    """The profile evidence's slope and curvature in ``t = log(alpha / beta)``, per row.

    Also ``gamma`` and ``E = ||t - F m||^2 + lam m^T m``; the profile itself is
    ``-n/2 log E - 1/2 sum_i log(1 + s_i / lam)``, never needed by the search.
    """
    # Rows x directions arrays, a pass over each costs most of the search: built in place,
    # three fewer temporaries (1.45x at 2,310 rows x 576).
    lam = np.exp(t)[:, None]
    u = np.reciprocal(np.add(lam, s2))
    w = u * s2  # a direction's share fitted,
    u *= lam  # and left
    wu = w * u
    gamma = w.sum(axis=1)
    sum_wu = wu.sum(axis=1)
    zwu = np.multiply(wu, Z2, out=wu)
    B = zwu.sum(axis=1)
    E = np.maximum(outside + np.einsum("ij,ij,ij->i", Z2, u, u), floor) + B
    slope = (gamma - n * B / E) / 2
    w -= u
    curve = (-sum_wu - n * np.einsum("ij,ij->i", zwu, w) / E + n * (B / E) ** 2) / 2
    return slope, curve, gamma, E


def _logme_ratio(s2, Z2, outside, floor, n):
    """The maximising ``log(alpha / beta)`` of each row, the first uphill from ``alpha = beta = 1``.

    A safeguarded Newton search for a zero of the profile's slope: uphill steps of 1, 2, 4,
    8, 16 until the slope changes sign, then Newton inside the bracket (bisection where
    Newton leaves it). Only the slope's sign steers it, which stays exact where the profile's own
    value is lost to rounding.
    """
    r = s2.size
    t = np.zeros(len(Z2))
    lo, hi = np.full(len(Z2), -np.inf), np.full(len(Z2), np.inf)  # slope > 0 at lo, < 0 at hi
    reach = np.ones(len(Z2))
    active = np.ones(len(Z2), bool)
    for _ in range(_LOGME_MAX_ITER):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        tr = t[rows]
        g, h, gamma, _ = _logme_profile(tr, s2, Z2[rows], outside[rows], floor[rows], n)
        lo[rows] = np.where(g > 0, tr, lo[rows])
        hi[rows] = np.where(g < 0, tr, hi[rows])
        concave = h < 0
        step = np.where(concave, -g / np.where(concave, h, -1.0), np.sign(g))
        newton = tr + step
        inside = concave & (newton > lo[rows]) & (newton < hi[rows])
        bracketed = np.isfinite(lo[rows]) & np.isfinite(hi[rows])
        # Unbracketed, the maximum may lie at infinity: growing steps reach the boundary
        # tests in a few iterations, where Newton's unit steps on e^-t tails take dozens.
        uphill = tr + np.sign(g) * reach[rows]
        reach[rows] = np.minimum(2 * reach[rows], 16.0)
        mid = (np.where(bracketed, lo[rows], 0.0) + np.where(bracketed, hi[rows], 0.0)) / 2
        new = np.where(bracketed, np.where(inside, newton, mid), uphill)
        boundary = (gamma < _LOGME_TOL * r) | (n - gamma < _LOGME_TOL * n)
        done = boundary | (np.abs(new - tr) <= _LOGME_TOL) | (hi[rows] - lo[rows] <= _LOGME_TOL)
        t[rows] = np.where(boundary, tr, new)
        active[rows[done]] = False
    return t


@validate_params({"features": ["array-like"], "y": ["array-like", None]},
                 prefer_skip_nested_validation=True)
def logme(features, y):
    """LogME: mean over classes of the maximised log evidence per sample.

    For each class ``c`` the target ``t`` is the 0/1 indicator of ``c``, and
    ``t = F m + noise`` is a Bayesian linear regression on the raw (uncentred)
    features ``F`` with prior ``m ~ N(0, I / alpha)`` and noise precision
    ``beta``. Its log evidence is::

        L = n/2 log beta + d/2 log alpha - n/2 log(2 pi) - beta/2 ||F m - t||^2
            - alpha/2 m^T m - 1/2 log det(alpha I + beta F^T F)

    with ``m = beta (alpha I + beta F^T F)^-1 F^T t`` the posterior mean. The
    paper maximises it by the fixed point ``gamma = sum_i beta s_i / (alpha +
    beta s_i)`` (``s_i`` the eigenvalues of ``F^T F``), ``alpha = gamma / m^T m``,
    ``beta = (n - gamma) / ||t - F m||^2`` from ``alpha = beta = 1``, which
    converges linearly and crawls on labels the features do not explain. Here the
    best ``beta`` for a given ``lam = alpha / beta`` is solved in closed form
    (``n / (||t - F m||^2 + lam m^T m)``, as ``m`` depends on ``lam`` alone), and
    the profile left in ``log lam`` is climbed by a safeguarded Newton search from
    ``lam = 1`` to its first maximum: the fixed point's stationary point, in about
    a tenth of its time. It stops when ``log lam`` moves by less than 1e-10; or
    when ``gamma < 1e-10 r`` (``r = min(n, d)``) or ``n - gamma < 1e-10 n``, where
    the maximum lies at ``alpha`` or ``beta`` infinite and the evidence is already
    within about ``1e-10 n`` of its supremum; or after 200 iterations (then ``L``
    at the last iterate, a lower bound of the maximum, is used). A class that no
    feature direction explains takes the ``alpha = inf`` limit in closed form. A
    residual ``||t - F m||^2`` below ``eps ||t||^2`` (``eps`` the float64 machine
    epsilon), the rounding level of its computation, is taken as that floor:
    features that fit a class exactly score high but finite, not ``+inf``.

    One thin SVD of ``F`` serves every class and makes an iteration
    O(n_classes min(n, d)). When ``n < d`` the ``d - n`` null directions of
    ``F^T F`` enter the determinant as ``(d - n) log alpha``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, computed in float64.
    y : array-like of shape (n_samples,)
        Class labels.

    Returns
    -------
    score : float
        ``mean_c L_c / n``, the paper's normalisation. Invariant to a global
        scale of the features (``alpha`` absorbs it), not to rescaling single
        features (the prior is isotropic).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.peers import logme
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> noise = rng.normal(size=(300, 8))
    >>> round(logme(noise, y), 3)
    -0.868
    >>> round(logme(noise + 3 * np.eye(3, 8)[y], y), 3)
    -0.225
    """
    X, codes = check_features(features, y, score="LogME")
    return logme_from_labels(logme_state(X), codes)


def logme_state(X) -> tuple:
    """The label-free part of :func:`logme`: ``F``'s left singular vectors and squared values.

    With no more samples than features (the blocks of a selection run), from
    an eigendecomposition of the ``n x n`` Gram matrix, 5 times faster than
    the thin SVD at 120 x 576, when its eigenvalues all lie above ``1e-6``
    times the largest: they carry an absolute rounding error of about ``eps``
    times the largest, which then stays below ``1e-10`` of each, and its
    eigenvectors are ``F``'s left singular vectors. Else the thin SVD, accurate
    to rounding for every singular value. (With more samples than features the
    same check on ``F^T F`` failed on 153 of 157 blocks and layers of SmolLM2 on
    BANKING77: no faster route there.)
    """
    n, d = X.shape
    if n <= d:
        s2, U = np.linalg.eigh(X @ X.T)
        if s2[0] > _GRAM_CONDITION * s2[-1]:
            return X.shape, U[:, ::-1], s2[::-1]
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    return X.shape, U, s**2


def logme_from_labels(state, codes) -> float:
    """:func:`logme` of one labelling, from :func:`logme_state`."""
    return float(logme_from_labellings(state, [codes])[0])


def logme_from_labellings(state, labellings) -> np.ndarray:
    """:func:`logme` of several labellings with the same classes, in one vectorised search.

    Each class of each labelling is one row of the vectorised search, so
    scoring 30 shuffles of the labels costs about one run on 30 times the classes.
    """
    (n, d), U, s2 = state
    r = s2.size
    n_classes = int(max(c.max() for c in labellings)) + 1
    # z_c = U^T t_c: a one-hot target projects as the column sums of U over class c.
    Z, t2 = labellings_class_sums(U, labellings, n_classes)
    Z2 = Z**2
    t2 = t2.astype(np.float64)
    # The part of t outside the column space of F is never fitted.
    outside = np.maximum(t2 - Z2.sum(axis=1), 0.0)
    explained = np.any(Z2 * s2 > 0, axis=1)

    def terms(alpha, beta, rows):
        denom = alpha[:, None] + beta[:, None] * s2
        gamma = np.sum(beta[:, None] * s2 / denom, axis=1)
        m2 = np.sum(beta[:, None] ** 2 * s2 * Z2[rows] / denom**2, axis=1)
        res2 = outside[rows] + np.sum(alpha[:, None] ** 2 * Z2[rows] / denom**2, axis=1)
        # ``outside`` is a difference of O(||t||^2) terms: below eps ||t||^2 the
        # residual is rounding, and an exact fit would send beta to infinity.
        return denom, gamma, m2, np.maximum(res2, _EPS * t2[rows])

    alpha, beta = np.ones(t2.size), np.ones(t2.size)
    rows = np.flatnonzero(explained)
    floor = _EPS * t2[rows]
    t = _logme_ratio(s2, Z2[rows], outside[rows], floor, n)
    beta[rows] = n / _logme_profile(t, s2, Z2[rows], outside[rows], floor, n)[3]
    alpha[rows] = np.exp(t) * beta[rows]
    denom, _, m2, res2 = terms(alpha, beta, np.arange(t2.size))
    logdet = np.sum(np.log(denom), axis=1) + (d - r) * np.log(alpha)
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)
    # No direction of F fits t: the supremum is the alpha = inf limit (m = 0).
    limit = n / 2 * (np.log(n / t2) - 1.0 - np.log(2 * np.pi))
    evidence = np.where(explained, evidence, limit)
    return evidence.reshape(len(labellings), n_classes).mean(axis=1) / n


@validate_params({"features": ["array-like"], "y": ["array-like", None],
                  "shrinkage": [None, StrOptions({"ledoit-wolf"}),
                                NumberInterval(Real, 0, 1, closed="both")]},
                 prefer_skip_nested_validation=True)
def hscore(features, y, *, shrinkage="ledoit-wolf"):
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))`` of the centred features.

    ``cov(E[f | y]) = sum_c (n_c / n) mu_c mu_c^T`` with ``mu_c`` the centred
    class means; both covariances are normalised by ``n``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, computed in float64.
    y : array-like of shape (n_samples,)
        Class labels.
    shrinkage : {"ledoit-wolf"}, float in [0, 1] or None, default="ledoit-wolf"
        How ``cov(f)`` is estimated and inverted:

        * None: the sample covariance, pseudo-inverted; its eigenvalues below
          ``max(n, d) * eps * largest`` (``eps`` the float64 machine epsilon,
          the rounding level of a covariance summed over ``n`` samples) count
          as zero. The score is then ``tr(P_F P_Y)``, ``P_F`` and ``P_Y`` the
          projections on the spans of the centred features and of the class
          indicators: it lies in ``[0, min(rank, n_classes - 1)]`` and is
          invariant to any invertible linear map of the features.
        * "ledoit-wolf": the regularised H-score of Ibrahim et al.,
          ``(1 - a) tr(cov_a(f)^-1 cov(E[f | y]))`` with ``cov_a`` the
          Ledoit-Wolf covariance and ``a`` its shrinkage intensity.
        * a float ``a``: the same with ``cov_a`` =
          ``sklearn.covariance.shrunk_covariance(cov, shrinkage=a)``; ``a = 0``
          gives the plain H-score on full-rank features.

        The factor ``1 - a`` shrinks ``cov(E[f | y])`` along with ``cov(f)``,
        as in Ibrahim et al., so the score tends to 0 as ``a`` goes to 1. Their
        reference code normalises ``cov(E[f | y])`` by ``n - 1``, which makes its
        values ``n / (n - 1)`` times these. With shrinkage the score is invariant
        to a global scale and a rotation of the features, not to other linear maps.

    Returns
    -------
    score : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.peers import hscore
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> X = rng.normal(size=(300, 8)) + 3 * np.eye(3, 8)[y]
    >>> round(hscore(X, y, shrinkage=None), 3)  # at most n_classes - 1
    1.513
    >>> round(hscore(X, y), 3)  # Ledoit-Wolf shrinkage
    1.477
    >>> bool(hscore(X, y) < hscore(X, y, shrinkage=None))
    True
    """
    X, codes = check_features(features, y, score="H-score")
    return hscore_from_labels(hscore_state(X, shrinkage), codes)


def hscore_state(X, shrinkage="ledoit-wolf") -> tuple:
    """The label-free part of :func:`hscore`: the centred features, whitened by ``cov(f)``.

    ``tr(C^+ B) = sum_c (n_c / n) mu_c^T C^+ mu_c`` is read in whitened
    coordinates ``W`` with ``W W^T = X C^+ X^T``, so a labelling costs the
    class means of ``W`` only. Up to a rotation these are ``L^-1 x`` for a
    shrunk ``C = L L^T``; where there are far fewer samples than features they
    come from the ``n x n`` Gram matrix instead (``X C^-1 X^T`` shares its
    eigenvectors), which turns the ``d^3`` work into ``n^3``.
    """
    n, d = X.shape
    X = X - X.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", X, X)
    # Below d / 2 texts an n x n eigendecomposition costs less than a d x d Cholesky factor
    # and a triangular solve; the pseudo-inverse needs an eigendecomposition either way.
    small = n < d and (shrinkage is None or 2 * n <= d)
    gram = X @ X.T if small else X.T @ X  # the same nonzero spectrum: n times cov(f)'s
    if shrinkage == "ledoit-wolf":
        a = _ledoit_wolf_shrinkage(gram, sq_norms, n, d)
    else:
        a = 0.0 if shrinkage is None else float(shrinkage)
    mu = sq_norms.sum() / (n * d)  # tr(cov(f)) / d, the target of the shrinkage
    # With a / d at the rounding level (a shrinkage of 1e-107, say) the inverse would amplify
    # rounding: the eigenbasis below drops those directions instead.
    if not small and a / d > max(n, d) * _EPS:
        cov = (1.0 - a) / n * gram
        cov.flat[:: d + 1] += a * mu
        try:
            factor = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            pass  # positive definite only up to rounding: the eigenbasis below
        else:
            return 1.0 - a, solve_triangular(factor, X.T, lower=True, check_finite=False).T
    evals, evecs = np.linalg.eigh(gram)
    keep = evals > max(n, d) * _EPS * max(evals[-1], 0.0)
    evals, evecs = evals[keep], evecs[:, keep]
    shrunk = (1.0 - a) / n * evals + a * mu  # cov(f)'s shrunk eigenvalues on X's span
    if small:  # X = U diag(sqrt(evals)) V^T, so X V diag(shrunk^-1/2) = U diag(...)
        return 1.0 - a, evecs * np.sqrt(evals / shrunk)
    return 1.0 - a, X @ (evecs / np.sqrt(shrunk))


def _ledoit_wolf_shrinkage(gram, sq_norms, n, d) -> float:
    """Ledoit and Wolf's shrinkage intensity of centred ``X``, from either Gram matrix.

    The formula of :func:`sklearn.covariance.ledoit_wolf_shrinkage`, whose two
    ``d x d`` products reduce to ``||X^T X||_F = ||X X^T||_F`` and
    ``sum_jk (X^2)^T X^2 = sum_i ||x_i||^4``.
    """
    if d == 1:
        return 0.0
    mu = sq_norms.sum() / (n * d)
    delta_ = np.sum(gram**2) / n**2
    beta = (np.sum(sq_norms**2) / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * sq_norms.sum() / n + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def hscore_from_labels(state, codes) -> float:
    """:func:`hscore` of one labelling, from :func:`hscore_state`."""
    return float(hscore_from_labellings(state, [codes])[0])


def hscore_from_labellings(state, labellings) -> np.ndarray:
    """:func:`hscore` of several labellings, from :func:`hscore_state`, in one product.

    ``sum_c (n_c / n) ||mean_c||^2 = sum_c ||sum_c||^2 / (n n_c)``, with every
    labelling's class sums from one sparse product
    (:func:`~sklearn_ntps.checks.labellings_class_sums`): gathering them labelling by
    labelling was most of the chance level's cost at 3,000 texts.
    """
    factor, white = state
    n_labellings, n_classes = len(labellings), int(np.max(labellings)) + 1
    sums, counts = labellings_class_sums(white, labellings, n_classes)
    per_class = np.einsum("ij,ij->i", sums, sums) / np.maximum(counts, 1)
    return factor * per_class.reshape(n_labellings, n_classes).sum(axis=1) / white.shape[0]


@validate_params({"features": ["array-like"], "y": ["array-like", None],
                  "eps": [Interval(Real, 0, None, closed="neither")]},
                 prefer_skip_nested_validation=True)
def transrate(features, y, *, eps=1e-4):
    """TransRate: coding rate of the features minus their coding rate given the class.

    With ``Z`` the features centred once over all samples (not per class),
    ``Z_c`` its rows of class ``c``, ``rms(Z) = sqrt(mean(Z**2))`` over all
    ``n d`` entries and ``R(A, delta) = 1/2 logdet(I + d / (m delta^2) A^T A)``
    for an ``m x d`` matrix ``A``::

        TransRate = R(Z, delta) - sum_c (n_c / n) R(Z_c, delta),   delta = eps * rms(Z)

    This is the paper's formula (the lossy coding rate of Ma et al. 2007) with
    the distortion ``delta`` relative to the scale of the features: the score
    is invariant to a global scale, ``transrate(c * X, y) == transrate(X, y)``
    for ``c > 0``. With an absolute distortion the score grows with the scale
    of the features whatever the task (on a language model's layers, whose
    activations grow with depth, it picks the deepest). On standardised
    features (every column of zero mean and unit population variance)
    ``rms(Z) = 1``, and the score is the paper's at distortion ``eps``.

    The authors' released code uses ``1 / (m eps)`` for ``d / (m delta^2)``
    and weighs the classes by ``1 / K`` rather than ``n_c / n``. The paper's
    form is kept because its weights make the score a true rate reduction: the
    class second moments ``Z_c^T Z_c / n_c`` average, with weights ``n_c / n``,
    to ``Z^T Z / n``, so by concavity of logdet the score is ``>= 0``, and 0
    when all classes share one second moment, however unbalanced the classes.
    On balanced classes the code's value on ``Z / rms(Z)`` is this one at
    ``eps = sqrt(d * eps_code)``: the relation holds up to that rescaling.

    Each log-determinant goes through the smaller Gram matrix (``A A^T`` or
    ``A^T A``, same determinant), so ``n < d`` stays cheap. Gram eigenvalues below
    the rounding level of the whole's (``max(n, d) * eps`` of its largest) count as
    zero, so rank-deficient features (always when ``n <= d``: centring removes one
    dimension) give a finite score however small ``eps``. A column whose centred
    values stay within the rounding of its mean (``n * eps`` of its largest
    magnitude, ``eps`` the float64 machine epsilon) is constant and counts as
    zero: rescaled to unit ``rms``, its rounding would otherwise read as signal.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, computed in float64.
    y : array-like of shape (n_samples,)
        Class labels.
    eps : float, default=1e-4
        Relative distortion: the features are coded up to a squared error
        ``(eps * rms(Z))^2``.

    Returns
    -------
    score : float
        In nats, ``>= 0``. 0 for constant features (all-zero ``Z``): no class
        is told apart from another. Invariant to a global scale and to a
        rotation of the features; to other invertible linear maps only
        approximately, where every class is coded far above the distortion
        (``log|det A|`` then cancels between the whole and the classes).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.peers import transrate
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(300) % 3
    >>> noise = rng.normal(size=(300, 8))
    >>> round(transrate(noise, y), 3)  # about d (d + 1) (K - 1) / (4 n) = 0.12
    0.126
    >>> X = noise + 3 * np.eye(3, 8)[y]
    >>> round(transrate(X, y), 3)
    0.525
    >>> bool(np.isclose(transrate(1e3 * X, y), transrate(X, y)))  # scale-invariant
    True
    """
    X, codes = check_features(features, y, score="TransRate")
    return transrate_from_labels(transrate_state(X, eps), codes)


def transrate_state(X, eps=1e-4):
    """The label-free part of :func:`transrate`: the scaled features and their coding rate.

    None for constant features, whose score is 0 whatever the labels.
    """
    n = X.shape[0]
    Z = X - X.mean(axis=0)
    # A constant column centres to the rounding of its mean, not to zero.
    Z[:, np.abs(Z).max(axis=0) <= n * _EPS * np.abs(X).max(axis=0)] = 0.0
    top = np.abs(Z).max()
    if top == 0.0:
        return None  # R(0) = 0 for the whole and for every class
    # delta = eps * rms(Z): code Z / rms(Z) at distortion eps. Dividing by the
    # largest entry first keeps the squares of tiny (subnormal) features from underflowing.
    Z /= top
    Z /= np.sqrt(np.mean(Z**2))
    lam = _gram_eigenvalues(Z)
    # One rounding level for every Gram, the whole's: a class's Gram lies below it, so a
    # direction dropped from the whole is dropped from every class (the score stays >= 0).
    floor = max(Z.shape) * _EPS * max(lam.max(initial=0.0), 0.0)
    return Z, eps, floor, _coding_rate(lam, Z.shape, eps, floor)


def transrate_from_labels(state, codes) -> float:
    """:func:`transrate` of one labelling, from :func:`transrate_state`."""
    if state is None:
        return 0.0
    Z, eps, floor, rate = state
    n = Z.shape[0]
    rate_given_y = sum(nc / n * _coding_rate(_gram_eigenvalues(Z[codes == c]), (nc, Z.shape[1]),
                                             eps, floor)
                       for c, nc in enumerate(np.bincount(codes)))
    return float(rate - rate_given_y)


def _gram_eigenvalues(A):
    """Eigenvalues of the smaller Gram matrix of ``A``: ``A A^T`` or ``A^T A``."""
    return np.linalg.eigvalsh(A @ A.T if A.shape[0] < A.shape[1] else A.T @ A)


def _coding_rate(lam, shape, eps, floor):
    """``1/2 logdet(I + d / (m eps^2) A^T A)`` for ``A`` (m, d) of Gram eigenvalues ``lam``.

    ``1/2 sum log(1 + c lam)``, ``c = d / (m eps^2)``, in logarithms so that neither
    ``c`` nor ``c lam`` overflows. Eigenvalues at most ``floor``, the Gram's rounding
    level, count as zero: ``logdet(I + c gram)`` with ``c gram`` beyond ``1 / eps`` would
    otherwise read rounding error (or a non-positive pivot) as signal.
    """
    m, d = shape
    lam = lam[lam > floor]
    return 0.5 * float(np.sum(np.logaddexp(0.0, np.log(d / m) - 2 * np.log(eps) + np.log(lam))))


@validate_params({"features": ["array-like"], "eps": [Interval(Real, 0, None, closed="left")]},
                 prefer_skip_nested_validation=True)
def rankme(features, *, eps=1e-7):
    """RankMe: the exponential of the entropy of the normalised singular values.

    ``p_k = sigma_k / ||sigma||_1 + eps`` over the ``min(n, d)`` singular values
    of the raw (uncentred) features, and ``RankMe = exp(-sum_k p_k log p_k)``.
    It needs no labels.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features, computed in float64; not all zero.
    eps : float, default=1e-7
        Keeps ``log p_k`` finite on zero singular values.

    Returns
    -------
    score : float
        A smooth rank in ``[1, min(n, d)]`` (up to ``eps`` effects): ``r`` for
        ``r`` equal non-zero singular values. Invariant to a global scale and
        to orthogonal maps of the features, not to other linear maps.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.scores.peers import rankme
    >>> round(rankme(np.eye(6, 10)), 3)  # six equal singular values
    6.0
    >>> round(rankme(np.eye(6, 10) * [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]), 3)
    3.0
    """
    X = check_features(features)
    sigma = np.linalg.svd(X, compute_uv=False)
    total = sigma.sum()
    if not total > 0:
        raise ValueError("RankMe is undefined for all-zero features.")
    p = sigma / total + eps
    p = p[p > 0]  # 0 log 0 = 0 when eps = 0
    return float(np.exp(-np.sum(p * np.log(p))))
