"""Known-answer tests of the peer transferability scores (sklearn_ntps.scores.peers)."""

import warnings

import numpy as np
import pytest

from sklearn_ntps.checks import check_features
from sklearn_ntps.scores.loo_probes import knn_accuracy, ridge_loo_accuracy
from sklearn_ntps.scores.peers import hscore, logme, rankme, transrate

N, K, D = 600, 3, 5


def labels(n=N, k=K, seed=0):
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def noise_features(n=N, d=D, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d))


def onehot_features(y, k=K, scale=1e-3, seed=2):
    """One-hot labels plus tiny noise, which keeps every class's features full rank."""
    return np.eye(k)[y] + scale * np.random.default_rng(seed).normal(size=(len(y), k))


LABELLED = {
    "logme": logme,
    "hscore": hscore,
    "hscore_pinv": lambda X, y: hscore(X, y, shrinkage=None),
    "hscore_0.3": lambda X, y: hscore(X, y, shrinkage=0.3),
    "transrate": transrate,
    "knn": knn_accuracy,
    "ridge": ridge_loo_accuracy,
}
# The accuracies lie in [0, 1]: at most 1 above chance.
ACCURACIES = {"knn", "ridge"}
ALL = {**LABELLED, "rankme": lambda X, y: rankme(X)}


# ---------------------------------------------------------------- known answers

@pytest.mark.parametrize("name", LABELLED)
def test_labelled_scores_prefer_onehot_features_to_noise(name):
    y = labels()
    score = LABELLED[name]
    margin = 0.5 if name in ACCURACIES else 1.0
    assert score(onehot_features(y), y) > score(noise_features(), y) + margin


def test_onehot_values():
    y = labels()
    X = onehot_features(y)
    # The centred one-hot features span exactly the centred class indicators.
    assert hscore(X, y, shrinkage=None) == pytest.approx(K - 1, abs=1e-4)
    assert hscore(X, y) == pytest.approx(K - 1, abs=0.01)
    assert logme(X, y) > 5.0  # noise 1e-3: beta ~ 1e6, 1/2 log beta ~ 7 per sample
    assert transrate(X, y) > 5.0
    assert rankme(X) == pytest.approx(K, abs=1e-3)
    assert knn_accuracy(X, y) == 1.0
    assert ridge_loo_accuracy(X, y) == 1.0


def test_exact_onehot_logme_is_finite():
    # An exact fit has unbounded evidence; the residual floor keeps it finite.
    y = labels()
    exact = logme(np.eye(K)[y], y)
    assert np.isfinite(exact) and exact > logme(onehot_features(y), y)


def test_noise_values():
    y = labels()
    X = noise_features()
    # E[H] ~ d (K - 1) / n = 0.017 for features independent of y.
    assert 0.0 <= hscore(X, y, shrinkage=None) < 0.05
    assert 0.0 <= hscore(X, y) < 0.05
    # Second-order expansion of the coding-rate difference for white noise:
    # E[TransRate] ~ d (d + 1) (K - 1) / (4 n) = 0.025 (0.0256 +- 0.006 over seeds).
    assert 0.0 < transrate(X, y) < 3 * D * (D + 1) * (K - 1) / (4 * N)
    assert logme(X, y) < -0.5
    # Isotropic noise: all singular values nearly equal.
    assert D - 0.1 < rankme(X) <= D
    # Chance is 1 / K.
    assert abs(knn_accuracy(X, y) - 1 / K) < 0.1
    assert abs(ridge_loo_accuracy(X, y) - 1 / K) < 0.1


def test_transrate_is_nonnegative_on_unbalanced_classes():
    rng = np.random.default_rng(3)
    y = rng.choice(3, size=400, p=[0.7, 0.2, 0.1])
    for seed in range(5):
        assert transrate(noise_features(400, 4, seed=seed), y) >= 0.0


# ------------------------------------------------------------ rank deficiency

@pytest.mark.parametrize("features", ["noise", "onehot"])
def test_duplicated_column(features):
    """What a copy of one column does to each score, and why.

    * H-score without shrinkage: depends only on the span of the centred
      features, which a copy leaves unchanged: equal to 1e-10.
    * LogME: a copy is a single feature with twice the prior variance: a small change.
    * TransRate: in its log regime the copy's factor cancels between R(Z) and
      R(Z|Y): a small change.
    * Ledoit-Wolf H-score and RankMe see the extra column: a small change only.
    """
    y = labels()
    X = noise_features() if features == "noise" else onehot_features(y)
    Xd = np.hstack([X, X[:, :1]])
    assert hscore(Xd, y, shrinkage=None) == pytest.approx(hscore(X, y, shrinkage=None), abs=1e-10)
    assert logme(Xd, y) == pytest.approx(logme(X, y), abs=1e-2)
    assert transrate(Xd, y) == pytest.approx(transrate(X, y), abs=1e-2)
    assert hscore(Xd, y) == pytest.approx(hscore(X, y), abs=2e-2)
    assert hscore(Xd, y, shrinkage=0.3) == pytest.approx(hscore(X, y, shrinkage=0.3), abs=0.1)
    assert rankme(Xd) == pytest.approx(rankme(X), abs=0.1)
    assert all(np.isfinite(f(Xd, y)) for f in ALL.values())
    # A copy weighs one column twice in the distances and the ridge penalty.
    assert knn_accuracy(Xd, y) == pytest.approx(knn_accuracy(X, y), abs=0.05)
    assert ridge_loo_accuracy(Xd, y) == pytest.approx(ridge_loo_accuracy(X, y), abs=0.05)


# ---------------------------------------------------------------- invariances

def test_global_scale():
    y = labels()
    for X in (noise_features(), onehot_features(y)):
        for c in (1e-3, 7.0, 1e3):
            # LogME: alpha absorbs the scale at the maximum of the evidence.
            assert logme(c * X, y) == pytest.approx(logme(X, y), abs=1e-8)
            assert hscore(c * X, y, shrinkage=None) == pytest.approx(
                hscore(X, y, shrinkage=None), abs=1e-10)
            assert hscore(c * X, y) == pytest.approx(hscore(X, y), abs=1e-10)
            assert hscore(c * X, y, shrinkage=0.3) == pytest.approx(
                hscore(X, y, shrinkage=0.3), abs=1e-10)
            assert rankme(c * X) == pytest.approx(rankme(X), abs=1e-10)
            # TransRate's distortion is eps * rms(Z): it scales with the features.
            assert transrate(c * X, y) == pytest.approx(transrate(X, y), abs=1e-8)
            assert knn_accuracy(c * X, y) == knn_accuracy(X, y)
            # The ridge penalty is in the units of the raw features: scaled by c^2, the same.
            assert ridge_loo_accuracy(c * X, y, alphas=c**2 * ALPHAS) == \
                ridge_loo_accuracy(X, y, alphas=ALPHAS)


ALPHAS = np.logspace(-3, 3, 13)


@pytest.mark.parametrize("c", [1e-150, 1e-6, 3.7, 1e6, 1e30])
def test_transrate_is_invariant_to_a_global_scale(c):
    """eps is relative to rms(Z): only the direction of the features matters."""
    y = labels(300)
    for X in (noise_features(300, 6), noise_features(300, 6) + np.eye(K, 6)[y],
              onehot_features(labels(300)), noise_features(30, 50) + np.eye(K, 50)[y[:30]]):
        yy = y[:len(X)]
        assert transrate(c * X, yy) == pytest.approx(transrate(X, yy), rel=1e-9, abs=1e-12)
        assert transrate(c * X, yy, eps=0.5) == pytest.approx(transrate(X, yy, eps=0.5),
                                                               rel=1e-9, abs=1e-12)


def test_transrate_is_the_papers_on_standardised_features():
    """rms(Z) = 1 on columns of zero mean and unit population variance: eps is absolute."""
    y = labels(300)
    X = 5.0 * noise_features(300, 6) + 2.0 * np.eye(K, 6)[y] - 3.0
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    for eps in (1e-4, 0.5):
        assert transrate(Xs, y, eps=eps) == pytest.approx(
            direct_transrate(Xs, y, eps, relative=False), rel=1e-8)
    # Raw features: the old absolute eps would read 5 X as a 5-times finer code.
    assert direct_transrate(X, y, 0.5, relative=False) != pytest.approx(
        direct_transrate(5 * X, y, 0.5, relative=False), rel=1e-3)


def test_transrate_of_constant_features_is_zero():
    y = labels(60)
    assert transrate(np.zeros((60, 4)), y) == 0.0
    # 0.1 is not a binary fraction: the mean rounds, and the centred features are
    # rounding; rescaled to unit rms they would read as noise.
    assert transrate(np.full((60, 4), 0.1), y) == 0.0
    assert transrate(np.full((60, 4), 0.1) + np.arange(4), y) == 0.0
    # A constant column next to real ones drops out, as it would without rounding.
    X = noise_features(60, 3) + np.eye(K, 3)[y]
    with_constant = np.hstack([X, np.full((60, 1), 0.1)])
    assert transrate(with_constant, y) == pytest.approx(
        direct_transrate(np.hstack([X, np.zeros((60, 1))]), y), rel=1e-8)


def test_invertible_linear_map():
    y = labels()
    X = noise_features() + np.eye(K, D)[y]
    A = np.random.default_rng(4).normal(size=(D, D))
    # Plain H-score: exactly invariant to any invertible map.
    assert hscore(X @ A, y, shrinkage=None) == pytest.approx(hscore(X, y, shrinkage=None), rel=1e-9)
    # Isotropic prior / isotropic shrinkage target / spectrum: all see the map.
    assert logme(X @ A, y) != pytest.approx(logme(X, y), abs=1e-3)
    assert hscore(X @ A, y) != pytest.approx(hscore(X, y), abs=1e-3)
    assert rankme(X @ A) != pytest.approx(rankme(X), abs=1e-3)
    # TransRate in its log regime (full-rank classes, small eps): log|det A|, like
    # the scale, cancels between the whole and the classes, up to O(eps^2) terms.
    assert transrate(X @ A, y) == pytest.approx(transrate(X, y), abs=1e-6)
    # Rotations are invisible to every score.
    Q = np.linalg.qr(A)[0]
    for name, score in ALL.items():
        assert score(X @ Q, y) == pytest.approx(score(X, y), abs=1e-8), name


@pytest.mark.parametrize("name", ALL)
def test_sample_permutation(name):
    y = labels()
    X = noise_features() + np.eye(K, D)[y]
    perm = np.random.default_rng(5).permutation(N)
    assert ALL[name](X[perm], y[perm]) == pytest.approx(ALL[name](X, y), abs=1e-9)


@pytest.mark.parametrize("name", LABELLED)
def test_label_encoding_does_not_matter(name):
    y = labels()
    X = noise_features() + np.eye(K, D)[y]
    names = np.array(["spam", "eggs", "ham"])[y]
    # k-NN's tie between classes goes to the first in sorted label order, which
    # renaming changes; one neighbour has no tie.
    score = (lambda X, y: knn_accuracy(X, y, n_neighbors=1)) if name == "knn" else LABELLED[name]
    assert score(X.astype(np.float32), names) == pytest.approx(
        score(X.astype(np.float32), y), abs=1e-12)


# ------------------------------------------------------------------- RankMe

@pytest.mark.parametrize("n, d, r", [(50, 8, 3), (8, 50, 5), (40, 40, 1)])
def test_rankme_of_equal_singular_values_is_the_rank(n, d, r):
    rng = np.random.default_rng(6)
    U = np.linalg.qr(rng.normal(size=(n, r)))[0]
    V = np.linalg.qr(rng.normal(size=(d, r)))[0]
    X = 3.0 * U @ V.T
    # The min(n, d) - r zero singular values add (min(n, d) - r) eps log(1/eps)
    # (1.6e-6 each) to the entropy: rel. 1e-5 for 8 values, 6e-5 for 40.
    eps, m = 1e-7, min(n, d)
    p = 1 / r + eps
    expected = np.exp(-(r * p * np.log(p) + (m - r) * eps * np.log(eps)))
    assert rankme(X) == pytest.approx(expected, rel=1e-10)
    assert rankme(X) == pytest.approx(r, rel=1e-4)
    assert rankme(X, eps=0.0) == pytest.approx(r, rel=1e-12)


def test_rankme_bounds():
    X = noise_features(30, 12)
    assert 1.0 <= rankme(X) <= 12.0
    one_direction = np.outer(np.arange(1, 31), np.ones(12)) + 1e-9 * X
    assert rankme(one_direction) == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------ H-score

def direct_hscore(X, y):
    """tr(pinv(cov f) cov(E[f | y])), with np.cov."""
    g = np.zeros_like(X)
    for c in np.unique(y):
        g[y == c] = X[y == c].mean(axis=0)
    return np.trace(np.linalg.pinv(np.cov(X, rowvar=False)) @ np.cov(g, rowvar=False))


@pytest.mark.parametrize("n, d, k", [(600, 5, 3), (200, 20, 7), (40, 2, 2)])
def test_hscore_matches_pinv_of_np_cov(n, d, k):
    y = labels(n, k)
    X = noise_features(n, d) + 0.5 * np.eye(k, d)[y] + 3.0  # off-centre on purpose
    assert hscore(X, y, shrinkage=None) == pytest.approx(direct_hscore(X, y), abs=1e-10)
    # Shrinkage 0 is the plain score on full-rank features.
    assert hscore(X, y, shrinkage=0.0) == pytest.approx(direct_hscore(X, y), abs=1e-10)


def shrunk_hscore(X, y, shrinkage):
    """(1 - a) tr(cov_a^-1 cov(E[f | y])), cov_a from scikit-learn's estimators."""
    from sklearn.covariance import ledoit_wolf, shrunk_covariance
    Z = X - X.mean(axis=0)
    if shrinkage == "ledoit-wolf":
        cov, a = ledoit_wolf(Z, assume_centered=True)
    else:
        cov, a = shrunk_covariance(Z.T @ Z / len(Z), shrinkage), shrinkage
    means = np.array([Z[y == c].mean(axis=0) for c in np.unique(y)])
    weights = np.bincount(y) / len(y)
    return (1 - a) * np.trace(np.linalg.solve(cov, (means.T * weights) @ means))


# n < d / 2 reads the n x n Gram matrix; d / 2 <= n < d and n >= d the d x d covariance.
@pytest.mark.parametrize("n, d", [(30, 90), (45, 90), (70, 90), (90, 90), (300, 12)])
@pytest.mark.parametrize("shrinkage", ["ledoit-wolf", 0.3])
def test_hscore_shrunk_matches_sklearn_covariance(n, d, shrinkage):
    y = labels(n, 5)
    X = noise_features(n, d) @ np.diag(np.linspace(0.2, 3, d)) + np.eye(5, d)[y] + 2.0
    assert hscore(X, y, shrinkage=shrinkage) == pytest.approx(
        shrunk_hscore(X, y, shrinkage), rel=1e-9)


def test_hscore_pinv_below_d_reads_the_gram_matrix():
    y = labels(30, 5)
    X = noise_features(30, 90) + np.eye(5, 90)[y]
    # On n < d samples the centred features span n - 1 directions: pinv's score is the
    # projection onto all of them, so every class mean counts, k - 1 = 4 in all.
    assert hscore(X, y, shrinkage=None) == pytest.approx(direct_hscore(X, y), abs=1e-9)
    assert hscore(X, y, shrinkage=None) == pytest.approx(4.0, abs=1e-9)


def test_hscore_shrinkage_path():
    y = labels()
    X = noise_features() + np.eye(K, D)[y]
    values = [hscore(X, y, shrinkage=a) for a in (0.0, 0.3, 0.7, 1.0)]
    assert np.all(np.diff(values) < 0) and values[-1] == 0.0


@pytest.mark.parametrize("bad", ["oas", -0.1, 1.5, True, np.nan, [0.5]])
def test_hscore_rejects_bad_shrinkage(bad):
    y = labels()
    with pytest.raises(ValueError, match="shrinkage"):
        hscore(noise_features(), y, shrinkage=bad)


# ---------------------------------------------------------------- TransRate

def direct_transrate(X, y, eps=1e-4, relative=True):
    """The paper's formula, each log-determinant from the singular values of its block.

    The distortion is ``eps * rms(Z)``, or ``eps`` with ``relative=False`` (the
    paper's absolute distortion). (More accurate than a d x d ``slogdet``, which
    loses ~1e-8 relative when ``d / (m eps^2)`` is 1e8 and the block is rank-deficient.)
    """
    Z = X - X.mean(axis=0)
    n, d = Z.shape
    if relative:
        eps = eps * np.sqrt(np.mean(Z**2))

    def rate(A):
        sigma = np.linalg.svd(A, compute_uv=False)
        return 0.5 * np.sum(np.log1p(d / (A.shape[0] * eps**2) * sigma**2))

    return rate(Z) - sum((y == c).sum() / n * rate(Z[y == c]) for c in np.unique(y))


@pytest.mark.parametrize("n, d, eps", [(300, 6, 1e-4), (30, 50, 1e-4), (60, 12, 0.5)])
def test_transrate_matches_direct_formula(n, d, eps):
    y = labels(n)
    X = noise_features(n, d) + np.eye(K, d)[y]
    assert transrate(X, y, eps=eps) == pytest.approx(direct_transrate(X, y, eps), rel=1e-8)


def test_transrate_relation_to_released_code():
    """The authors' code: factor 1 / (m eps) and a plain mean over the K classes."""
    y = labels(300)
    X = 3.0 * noise_features(300, 6) + np.eye(K, 6)[y]
    Z = X - X.mean(axis=0)
    Z /= np.sqrt(np.mean(Z**2))  # the code on Z / rms(Z)
    eps_code = 1e-4

    def rate(A):
        m, d = A.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + A.T @ A / (m * eps_code))[1]

    code = rate(Z) - np.mean([rate(Z[y == c]) for c in range(K)])
    # Balanced classes: the same number at eps^2 = d * eps_code.
    assert transrate(X, y, eps=np.sqrt(6 * eps_code)) == pytest.approx(code, rel=1e-10)


@pytest.mark.parametrize("bad", [0, -1e-3, np.nan, "1e-4"])
def test_transrate_rejects_bad_eps(bad):
    with pytest.raises(ValueError, match="eps"):
        transrate(noise_features(), labels(), eps=bad)


# -------------------------------------------------------------------- LogME

def direct_logme(F, y, tol=1e-10, max_iter=1000):
    """LogME from explicit d x d matrices, with the same stopping rules as peers.logme."""
    n, d = F.shape
    r = min(n, d)
    evidences = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            A = alpha * np.eye(d) + beta * F.T @ F
            m = beta * np.linalg.solve(A, F.T @ t)
            lam = np.linalg.eigvalsh(beta * F.T @ F)
            gamma = np.sum(lam / (alpha + lam))
            if gamma < tol * r or n - gamma < tol * n:
                break
            new_alpha = gamma / (m @ m)
            new_beta = (n - gamma) / np.sum((t - F @ m) ** 2)
            done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
            alpha, beta = new_alpha, new_beta
            if done:
                break
        A = alpha * np.eye(d) + beta * F.T @ F
        m = beta * np.linalg.solve(A, F.T @ t)
        evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * np.sum((F @ m - t) ** 2) - alpha / 2 * (m @ m)
                    - np.linalg.slogdet(A)[1] / 2)
        evidences.append(evidence / n)
    return np.mean(evidences)


@pytest.mark.parametrize("n, d, signal", [(120, 6, 1.0), (120, 6, 0.0), (30, 50, 2.0),
                                          (30, 50, 0.0), (40, 40, 1.0)])
def test_logme_matches_direct_implementation(n, d, signal):
    # signal = 0 reaches the alpha = inf boundary for some classes.
    y = labels(n)
    F = noise_features(n, d, seed=7) + signal * np.eye(K, d)[y]
    assert logme(F, y) == pytest.approx(direct_logme(F, y), abs=1e-6)


@pytest.mark.parametrize("n, d", [(40, 90), (90, 90)])
def test_logme_state_gram_route_matches_the_svd(n, d, monkeypatch):
    from sklearn_ntps.scores import peers
    y = labels(n, 5)
    X = noise_features(n, d) + np.eye(5, d)[y]
    fast = logme(X, y)
    gram_state = peers.logme_state(X)
    monkeypatch.setattr(peers, "_GRAM_CONDITION", np.inf)  # every spectrum to the SVD
    svd_state = peers.logme_state(X)
    np.testing.assert_allclose(gram_state[2], svd_state[2], rtol=1e-10)
    # Singular vectors agree up to sign: compare the projector onto each.
    np.testing.assert_allclose(np.abs(np.sum(gram_state[1] * svd_state[1], axis=0)), 1.0,
                               rtol=1e-10)
    assert fast == pytest.approx(logme(X, y), rel=1e-10)


def test_logme_state_ill_conditioned_takes_the_svd():
    from sklearn_ntps.scores import peers
    rotation = np.linalg.qr(noise_features(30, 30, seed=3))[0]  # no graded rows
    X = rotation @ np.diag(np.logspace(0, -6, 30)) @ noise_features(30, 40)  # s^2 1e-12
    _, U, s2 = peers.logme_state(X)
    np.testing.assert_allclose(s2, np.linalg.svd(X, compute_uv=False) ** 2, rtol=1e-9)
    np.testing.assert_allclose(U.T @ U, np.eye(30), atol=1e-12)


def test_logme_interpolating_regime():
    # n << d: every target is fitted exactly as beta -> inf; the n - gamma rule
    # (or the iteration cap) stops the fixed point before it overflows.
    y = labels(10)
    F = noise_features(10, 200, seed=8) + 2.0 * np.eye(K, 200)[y]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(logme(F, y))


def test_logme_class_that_no_feature_explains():
    # The class-2 indicator is orthogonal to every column: the alpha = inf limit.
    y = np.repeat([0, 1, 2], 4)
    F = np.zeros((12, 2))
    F[y == 0, 0] = 1.0
    F[y == 1, 1] = np.arange(1.0, 5.0)
    assert np.isfinite(logme(F, y))


# ---------------------------------------------------------------------- k-NN















# ----------------------------------------------------------------- ridge probe











# ----------------------------------------------------------------- input check

def test_check_features_returns_float64_and_codes():
    X = check_features(np.ones((3, 2), dtype=np.float32))
    assert X.dtype == np.float64 and X.shape == (3, 2)
    X, codes = check_features([[1, 2], [3, 4], [5, 6]], np.array([10, 2, 10]))
    assert codes.tolist() == [1, 0, 1]


@pytest.mark.parametrize("features, y, match", [
    (np.ones(5), None, "2-D"),
    (np.ones((2, 2, 2)), None, "2-D"),
    (np.ones((1, 3)), None, "at least 2 samples"),
    (np.ones((4, 0)), None, "at least 1 feature"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), None, "NaN or infinity in the features"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), None, "NaN or infinity in the features"),
    (np.array([[1.0, 1e39], [0.0, 1.0]]), None, "beyond float32's range"),
    (np.ones((4, 2)), [0, 0, 0, 0], "at least two classes"),
    (np.ones((4, 2)), [0, 1, 0], "different lengths"),
    (np.ones((4, 2)), np.zeros((4, 2)), "1-D"),
    (np.ones((4, 2)), np.array(["a", 1, None, "a"], dtype=object), "cannot be compared"),
])
def test_check_features_errors(features, y, match):
    with pytest.raises(ValueError, match=match):
        check_features(features, y)


@pytest.mark.parametrize("name", ALL)
def test_every_score_checks_its_input(name):
    # (k-NN's default 3 neighbours need 4 samples: the features are checked first.)
    with pytest.raises(ValueError, match="NaN"):
        ALL[name](np.array([[np.nan, 1.0], [0.0, 1.0], [1.0, 0.0]]), [0, 1, 0])
    if name != "rankme":
        with pytest.raises(ValueError, match="two classes"):
            ALL[name](np.eye(3), [1, 1, 1])
        with pytest.raises(ValueError, match="lengths"):
            ALL[name](np.eye(3), [0, 1])


def test_rankme_rejects_zero_features_and_bad_eps():
    with pytest.raises(ValueError, match="all-zero"):
        rankme(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="eps"):
        rankme(np.eye(3), eps=-1.0)
