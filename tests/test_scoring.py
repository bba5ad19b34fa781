import numpy as np
import pytest
from scipy import linalg
from scipy.stats import ortho_group

from sklearn_ntps import compute_moments, ntps_score
from sklearn_ntps.scoring import resolve_n_components

from conftest import make_block_texts, make_texts

VARIANTS = ["paper", "whitened"]


def direct_ntps(X, y, k):
    """Both variants straight from the spec's formulas, with full-rank matrices."""
    d = X[0].shape[1]
    n = len(X)
    C0, C1 = np.zeros((d, d)), np.zeros((d, d))
    for H in X:
        c = np.cumsum(H, axis=0)
        C0 += c[:-1].T @ c[:-1]
        C1 += c[:-1].T @ H[1:]
    C0, C1 = C0 / n, C1 / n
    P = np.array([H.mean(axis=0) for H in X])
    Y = np.eye(y.max() + 1)[y]
    Sxx, Sxy = P.T @ P / n, P.T @ Y / n
    V = linalg.eigh(C1 @ C1.T, C0)[1][:, ::-1][:, :k]
    U = linalg.eigh(Sxy @ Sxy.T, Sxx)[1][:, ::-1][:, : min(k, Y.shape[1])]
    proj = V @ np.linalg.solve(V.T @ V, V.T)
    paper = np.linalg.norm(proj @ U) ** 2 / np.linalg.norm(U) ** 2
    explained_k = np.trace(Sxy.T @ V @ np.linalg.solve(V.T @ Sxx @ V, V.T @ Sxy))
    explained_all = np.trace(Sxy.T @ np.linalg.solve(Sxx, Sxy))
    return {"paper": paper, "whitened": explained_k / explained_all}


@pytest.mark.parametrize("k", [1, 2, 4, 7, 10])
def test_agrees_with_direct_formulas(k):
    X, y = make_texts(n_texts=300, n_features=10, n_classes=4, min_len=2, seed=k)
    ref = direct_ntps(X, y, k)
    for variant in VARIANTS:
        got = ntps_score(X, y, n_components=k, variant=variant)
        assert abs(got - ref[variant]) < 1e-8, (variant, got, ref[variant])


@pytest.mark.parametrize("seed", range(5))
def test_curve_stays_in_unit_interval(seed):
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=40, n_features=12, seed=seed)
    for variant in VARIANTS:
        curve = NTPSScorer(variant=variant).fit(X, y).ntps_curve_
        assert curve.shape == (12,)
        assert np.all((curve >= 0) & (curve <= 1))


def test_exactly_one_when_perception_lies_in_the_ar_subspace():
    X, y = make_block_texts("predictable", a=4, b=4, mirror=True)
    m = compute_moments(X)
    # The construction makes both blocks decouple exactly.
    np.testing.assert_allclose(m.c0[:4, 4:], 0, atol=1e-9 * np.abs(m.c0).max())
    for variant in VARIANTS:
        assert ntps_score(X, y, n_components=4, variant=variant) == pytest.approx(1.0, abs=1e-10)
        assert ntps_score(X, y, n_components=2, variant=variant) < 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_predictable_class_signal_scores_higher(variant):
    high = ntps_score(*make_block_texts("predictable"), n_components=4, variant=variant)
    low = ntps_score(*make_block_texts("unpredictable"), n_components=4, variant=variant)
    assert high > 0.75 and low < 0.1, (high, low)


@pytest.mark.parametrize("variant", VARIANTS)
def test_invariances(variant):
    X, y = make_texts(n_texts=120, n_features=9, n_classes=3, min_len=2, seed=4)
    ref = ntps_score(X, y, n_components=3, variant=variant)
    perm = np.random.default_rng(0).permutation(len(X))
    R = ortho_group.rvs(9, random_state=0)
    cases = {
        "permuted texts": ([X[i] for i in perm], y[perm]),
        "global scale": ([1e3 * x for x in X], y),
        "rotation": ([x @ R for x in X], y),
        "relabelled classes": (X, np.array(["c", "a", "b"])[y]),
    }
    for name, (Xc, yc) in cases.items():
        got = ntps_score(Xc, yc, n_components=3, variant=variant)
        assert got == pytest.approx(ref, abs=1e-9), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_fewer_texts_than_features_equals_the_embedded_full_rank_problem(variant):
    # n < d: embed 6-d states isometrically in 40-d; covariances become singular
    # but the score must not change.
    X, y = make_texts(n_texts=30, n_features=6, min_len=2, seed=5)
    Q = ortho_group.rvs(40, random_state=1)[:, :6]
    low = ntps_score(X, y, n_components=3, variant=variant)
    high = ntps_score([x @ Q.T for x in X], y, n_components=3, variant=variant)
    assert high == pytest.approx(low, abs=1e-8)


def test_whitened_is_the_least_squares_probe_share():
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=150, n_features=8, n_classes=3, min_len=2, seed=6)
    scorer = NTPSScorer(n_components=3, variant="whitened").fit(X, y)
    P = np.array([x.mean(axis=0) for x in X])
    Y = np.eye(3)[y]

    def explained(F):
        coef, *_ = np.linalg.lstsq(F, Y, rcond=None)
        return np.linalg.norm(F @ coef) ** 2

    share = explained(P @ scorer.components_.T) / explained(P)
    assert scorer.ntps_ == pytest.approx(share, abs=1e-10)


def test_curve_grows_once_k_covers_the_classes():
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=200, n_features=10, n_classes=3, seed=7)
    for variant in VARIANTS:
        curve = NTPSScorer(variant=variant).fit(X, y).ntps_curve_
        start = 0 if variant == "whitened" else 2
        assert np.all(np.diff(curve[start:]) >= -1e-12)
        assert curve[-1] == pytest.approx(1.0)


def test_n_components_resolution():
    assert resolve_n_components(0.25, 576) == 144
    assert resolve_n_components(1.0, 10) == 10
    assert resolve_n_components(0.01, 10) == 1
    assert resolve_n_components(3, 10) == 3
    for bad in (0, 11, -1, 0.0, 1.5, True):
        with pytest.raises(ValueError, match="n_components"):
            resolve_n_components(bad, 10)


def test_bad_labels_and_lengths():
    X, y = make_texts(n_texts=20, n_features=4)
    with pytest.raises(ValueError, match="single class"):
        ntps_score(X, np.zeros(20))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        ntps_score(X, y[:-1])
    with pytest.raises(ValueError, match="variant"):
        ntps_score(X, y, variant="other")
    with pytest.raises(ValueError, match="at least two tokens"):
        ntps_score([np.ones((1, 4)) * i for i in range(4)], [0, 1, 0, 1])


def test_curve_agrees_with_direct_formulas_at_every_k():
    from sklearn_ntps import ntps_curve

    X, y = make_texts(n_texts=200, n_features=6, min_len=2, seed=8)
    curves = {variant: ntps_curve(X, y, variant=variant) for variant in VARIANTS}
    for k in range(1, 7):
        ref = direct_ntps(X, y, k)
        for variant in VARIANTS:
            assert abs(curves[variant][k - 1] - ref[variant]) < 1e-8, (variant, k)
