import numpy as np
import pytest
from scipy import linalg
from scipy.stats import ortho_group

from sklearn_ntps import compute_moments, ntps_curve, ntps_score
from sklearn_ntps.scores.ntps import resolve_n_components

from builders import make_block_texts, make_texts

VARIANTS = ["paper", "whitened"]


# The default numerical floor for float64 states, taken as upcast float32: 4096 unit roundoffs.
DEFAULT_FLOOR = 4096 * np.finfo(np.float32).eps / 2


def direct_ntps(X, y, k, floor=0.0):
    """Both variants straight from the spec's formulas, with full-rank matrices.

    ``floor`` adds ``floor * diag`` to ``C0`` and ``Sxx``, as the numerical floor does.
    """
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
    C0, Sxx = C0 + floor * np.diag(np.diag(C0)), Sxx + floor * np.diag(np.diag(Sxx))
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
        got = ntps_score(X, y, n_components=k, variant=variant, rtol=0)
        assert abs(got - ref[variant]) < 1e-8, (variant, got, ref[variant])


@pytest.mark.parametrize("seed", range(3))
def test_curve_at_the_default_floor_is_the_spec_with_the_floor_added(seed):
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=40, n_features=12, seed=seed)
    for variant in VARIANTS:
        curve = NTPSScorer(variant=variant).fit(X, y).ntps_curve_
        ref = [direct_ntps(X, y, k, floor=DEFAULT_FLOOR)[variant] for k in range(1, 13)]
        np.testing.assert_allclose(curve, ref, atol=1e-8, err_msg=variant)


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
    ref = ntps_score(X, y, n_components=3, variant=variant, rtol=0)
    perm = np.random.default_rng(0).permutation(len(X))
    R = ortho_group.rvs(9, random_state=0)
    cases = {
        "permuted texts": ([X[i] for i in perm], y[perm]),
        "global scale": ([1e3 * x for x in X], y),
        "rotation": ([x @ R for x in X], y),
        "relabelled classes": (X, np.array(["c", "a", "b"])[y]),
    }
    for name, (Xc, yc) in cases.items():
        got = ntps_score(Xc, yc, n_components=3, variant=variant, rtol=0)
        assert got == pytest.approx(ref, abs=1e-9), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_fewer_texts_than_features_equals_the_embedded_full_rank_problem(variant):
    # n < d: embed 6-d states isometrically in 40-d; covariances become singular
    # but the score must not change.
    X, y = make_texts(n_texts=30, n_features=6, min_len=2, seed=5)
    Q = ortho_group.rvs(40, random_state=1)[:, :6]
    low = ntps_score(X, y, n_components=3, variant=variant, rtol=0)
    high = ntps_score([x @ Q.T for x in X], y, n_components=3, variant=variant, rtol=0)
    assert high == pytest.approx(low, abs=1e-8)


def test_whitened_is_the_least_squares_probe_share():
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=150, n_features=8, n_classes=3, min_len=2, seed=6)
    scorer = NTPSScorer(n_components=3, variant="whitened", rtol=0).fit(X, y)
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
    assert resolve_n_components(np.int64(3), 10) == 3
    # Only the bound set by the data is the resolver's to check...
    with pytest.raises(ValueError, match="n_components=11 is out of range"):
        resolve_n_components(11, 10)
    # ... the rest is the parameter constraints', once, for the function and the estimator.
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=20, n_features=4)
    for bad in (0, -1, 0.0, 1.5, True, np.nan, "half"):
        with pytest.raises(ValueError, match="'n_components' parameter of ntps_score"):
            ntps_score(X, y, n_components=bad)
        with pytest.raises(ValueError, match="'n_components' parameter of NTPSScorer"):
            NTPSScorer(n_components=bad).fit(X, y)


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
    X, y = make_texts(n_texts=200, n_features=6, min_len=2, seed=8)
    curves = {variant: ntps_curve(X, y, variant=variant, rtol=0) for variant in VARIANTS}
    for k in range(1, 7):
        ref = direct_ntps(X, y, k)
        for variant in VARIANTS:
            assert abs(curves[variant][k - 1] - ref[variant]) < 1e-8, (variant, k)


# ------------------------------------------------------- options: centring, shrinkage, floor

def brute_force_covariances(X, y, centering):
    """Sxx, Sxy, C0, C1 straight from the definitions, with explicit means."""
    n = len(X)
    P = np.array([H.mean(axis=0) for H in X])
    Y = np.eye(y.max() + 1)[y]
    ctx = np.vstack([np.cumsum(H, axis=0)[:-1] for H in X])
    nxt = np.vstack([H[1:] for H in X])
    if centering:
        P, ctx, nxt = P - P.mean(0), ctx - ctx.mean(0), nxt - nxt.mean(0)
    return P.T @ P / n, P.T @ Y / n, ctx.T @ ctx / n, ctx.T @ nxt / n


@pytest.mark.parametrize("centering", [False, True])
@pytest.mark.parametrize("shrinkage", [None, 0.3])
def test_options_agree_with_direct_formulas(centering, shrinkage):
    X, y = make_texts(n_texts=300, n_features=7, n_classes=4, min_len=2, seed=11)
    Sxx, Sxy, C0, C1 = brute_force_covariances(X, y, centering)

    def shrunk(S):
        a = shrinkage or 0.0
        return (1 - a) * S + a * np.trace(S) / S.shape[0] * np.eye(S.shape[0])

    Sxx, C0 = shrunk(Sxx), shrunk(C0)
    k, r = 3, 3 if centering else 4   # centred, Sxy has rank C - 1
    V = linalg.eigh(C1 @ C1.T, C0)[1][:, ::-1][:, :k]
    U = linalg.eigh(Sxy @ Sxy.T, Sxx)[1][:, ::-1][:, :r]
    U = U / np.sqrt(np.einsum("ij,ik,kj->j", U, Sxx, U))
    proj = V @ np.linalg.solve(V.T @ V, V.T)
    paper = np.linalg.norm(proj @ U[:, :k]) ** 2 / np.linalg.norm(U[:, :k]) ** 2
    whitened = (np.trace(Sxy.T @ V @ np.linalg.solve(V.T @ Sxx @ V, V.T @ Sxy))
                / np.trace(Sxy.T @ np.linalg.solve(Sxx, Sxy)))
    for variant, ref in (("paper", paper), ("whitened", whitened)):
        got = ntps_score(X, y, n_components=k, variant=variant, centering=centering,
                         shrinkage=shrinkage, rtol=0)
        assert got == pytest.approx(ref, abs=1e-8), variant


def test_ledoit_wolf_intensities():
    from sklearn.covariance import ledoit_wolf_shrinkage

    from sklearn_ntps.scores.ntps import Options, perception_side, rblw_shrinkage

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(4000, 30)) * np.linspace(0.5, 3, 30)
    S = Z.T @ Z / len(Z)
    # Rao-Blackwellised Ledoit-Wolf: Gaussian samples, so close to Ledoit-Wolf itself.
    assert rblw_shrinkage(S, len(Z)) == pytest.approx(
        ledoit_wolf_shrinkage(Z, assume_centered=True), rel=0.2)
    assert rblw_shrinkage(np.eye(5), 100) == 0.0  # nothing to shrink, as in scikit-learn
    # The perception side shrinks Sxx by scikit-learn's own intensity.
    y = rng.integers(0, 3, size=60)
    P = rng.normal(size=(60, 30))
    a = ledoit_wolf_shrinkage(P, assume_centered=True)
    got = perception_side(P, y, 3, options=Options(shrinkage="ledoit-wolf"))
    ref = perception_side(P, y, 3, options=Options(shrinkage=a))
    np.testing.assert_allclose(got.whitening.root @ got.whitening.root.T,
                               ref.whitening.root @ ref.whitening.root.T, rtol=1e-12)


def test_ledoit_wolf_makes_n_below_d_well_posed():
    # 20 texts in 40 dimensions: Sxx is singular, its Ledoit-Wolf shrinkage is not.
    from sklearn.covariance import ledoit_wolf_shrinkage

    X, y = make_texts(n_texts=20, n_features=40, n_classes=2, min_len=2, seed=12)
    Sxx, Sxy, C0, C1 = brute_force_covariances(X, y, centering=False)
    P = np.array([H.mean(axis=0) for H in X])
    n_pairs = sum(len(H) - 1 for H in X)
    tr, tr2, d = np.trace(C0), np.sum(C0 * C0), 40
    # C0's samples are not kept: Chen et al.'s Rao-Blackwellised Ledoit-Wolf intensity.
    a_c0 = min(1.0, ((n_pairs - 2) / n_pairs * tr2 + tr**2) / ((n_pairs + 2) * (tr2 - tr**2 / d)))
    a_xx = ledoit_wolf_shrinkage(P, assume_centered=True)

    def shrunk(S, a):
        return (1 - a) * S + a * np.trace(S) / d * np.eye(d)

    # (C0 here is per text, the code's per pair: the intensity and V ignore the scale.)
    Sxx, C0, k = shrunk(Sxx, a_xx), shrunk(C0, a_c0), 5
    V = linalg.eigh(C1 @ C1.T, C0)[1][:, ::-1][:, :k]
    U = linalg.eigh(Sxy @ Sxy.T, Sxx)[1][:, ::-1][:, :2]
    proj = V @ np.linalg.solve(V.T @ V, V.T)
    ref = {"paper": np.linalg.norm(proj @ U) ** 2 / np.linalg.norm(U) ** 2,
           "whitened": np.trace(Sxy.T @ V @ np.linalg.solve(V.T @ Sxx @ V, V.T @ Sxy))
           / np.trace(Sxy.T @ np.linalg.solve(Sxx, Sxy))}
    for variant in VARIANTS:
        score = ntps_score(X, y, n_components=k, variant=variant, shrinkage="ledoit-wolf", rtol=0)
        assert score == pytest.approx(ref[variant], abs=1e-8), variant


def test_default_floor_follows_the_precision_of_the_states():
    from sklearn_ntps.scores.ntps import resolve_rtol

    f32 = np.finfo(np.float32).eps / 2
    assert resolve_rtol(None, f32) == pytest.approx(4096 * f32)
    assert resolve_rtol(None, np.finfo(np.float16).eps / 2) == 0.1      # capped
    assert resolve_rtol(0, f32) == 0.0
    X, y = make_texts(n_texts=80, n_features=6, min_len=2, seed=13)
    assert compute_moments(X).precision == f32          # float64 taken as upcast float32
    assert (compute_moments([x.astype(np.float16) for x in X]).precision
            == np.finfo(np.float16).eps / 2)
    assert resolve_rtol(np.float32(0.5), f32) == 0.5
    for bad in (-1, "abc", True, np.nan, 1e300):
        with pytest.raises(ValueError, match="'rtol' parameter of ntps_score"):
            ntps_score(X, y, rtol=bad)
    for name, bad in (("shrinkage", True), ("shrinkage", 1.5), ("shrinkage", "oas"),
                      ("centering", 1), ("variant", "other")):
        with pytest.raises(ValueError, match=f"'{name}' parameter of ntps_curve"):
            ntps_curve(X, y, **{name: bad})


def test_default_floor_keeps_rotation_and_scale_invariance_nearly():
    X, y = make_texts(n_texts=120, n_features=9, n_classes=3, min_len=2, seed=4)
    R = ortho_group.rvs(9, random_state=0)
    for variant in VARIANTS:
        ref = ntps_score(X, y, n_components=3, variant=variant)
        assert ntps_score([1e3 * x for x in X], y, n_components=3, variant=variant) == \
            pytest.approx(ref, abs=1e-12)
        assert ntps_score([x @ R for x in X], y, n_components=3, variant=variant) == \
            pytest.approx(ref, abs=1e-3)


def worst_relative_move(moments, y, eps=1e-6, repeats=3, **params):
    from sklearn_ntps import NTPSScorer
    from sklearn_ntps.evidence.study import perturb_moments

    base = NTPSScorer(**params).fit(moments, y).ntps_
    rng = np.random.default_rng(0)
    moved = [NTPSScorer(**params).fit(perturb_moments(moments, eps, rng), y).ntps_
             for _ in range(repeats)]
    return max(abs(m - base) for m in moved) / base


OPTIONS = [dict(variant=v, centering=c, shrinkage=s) for v in VARIANTS for c in (False, True)
           for s in (None, "ledoit-wolf")]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The number of unique classes")
@pytest.mark.parametrize("params", OPTIONS, ids=lambda p: "-".join(map(str, p.values())))
def test_default_score_is_stable_under_float32_noise_on_smollm2(params, smollm2_layer15):
    moments, y = smollm2_layer15
    assert worst_relative_move(moments, y, **params) < 0.01


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The number of unique classes")
def test_authors_cutoff_was_not(smollm2_layer15):
    # The perturbation is strong enough to matter: without the floor the paper's
    # score moves by more than the 1% the default keeps to.
    moments, y = smollm2_layer15
    assert worst_relative_move(moments, y, variant="paper", n_components=8, rtol=0) > 0.01


# ------------------------------------------------------------------ the exact excess loss

def brute_force_excess(P, Y, V, k, centering):
    if centering:
        P, Y = P - P.mean(0), Y - Y.mean(0)
    n = len(P)

    def loss(F):
        coef, *_ = np.linalg.lstsq(F, Y, rcond=None)
        return np.linalg.norm(Y - F @ coef) ** 2 / n

    coef, *_ = np.linalg.lstsq(P, Y, rcond=None)
    fitted = P @ coef
    Uf, s, Wt = np.linalg.svd(fitted, full_matrices=False)
    best_k = np.linalg.norm(Y - (Uf[:, :k] * s[:k]) @ Wt[:k]) ** 2 / n
    return loss(P @ V[:, :k]) - best_k


@pytest.mark.parametrize("centering", [False, True])
def test_excess_loss_equals_brute_force_least_squares(centering):
    from sklearn_ntps import NTPSScorer

    X, y = make_texts(n_texts=250, n_features=8, n_classes=4, min_len=2, seed=14)
    scorer = NTPSScorer(n_components=2, centering=centering, rtol=0).fit(X, y)
    P = np.array([x.mean(axis=0) for x in X])
    Y = np.eye(4)[y]
    # The nested basis spans the same V_k as the generalized eigenvectors.
    full = NTPSScorer(n_components=8, centering=centering, rtol=0).fit(X, y).components_.T
    for k in range(1, 9):
        ref = brute_force_excess(P, Y, full, k, centering)
        assert scorer.excess_loss_curve_[k - 1] == pytest.approx(ref, abs=1e-8), k
    assert scorer.excess_loss_ == scorer.excess_loss_curve_[1]
    # Once k covers the classes: ||M||^2 (1 - NTPS_w(k)).
    w = NTPSScorer(n_components=5, variant="whitened", centering=centering, rtol=0).fit(X, y)
    coef, *_ = np.linalg.lstsq(P - P.mean(0) * centering, Y - Y.mean(0) * centering, rcond=None)
    explained = np.linalg.norm((P - P.mean(0) * centering) @ coef) ** 2 / len(P)
    assert w.excess_loss_ == pytest.approx(explained * (1 - w.ntps_), abs=1e-10)


@pytest.mark.parametrize("centering, shrinkage", [(False, None), (True, None),
                                                  (False, "ledoit-wolf")])
def test_cholesky_and_eigen_factorisations_give_the_same_curves(monkeypatch, centering, shrinkage):
    from sklearn_ntps.scores import subspaces
    from sklearn_ntps.scores.ntps import fit_ntps, make_options

    X, y = make_texts(n_texts=150, n_features=40, n_classes=4, min_len=2, seed=21)
    moments = compute_moments(X)
    options = make_options(centering=centering, shrinkage=shrinkage,
                           precision=moments.precision)
    fast = fit_ntps(moments, y, 4, options=options)
    monkeypatch.setattr(subspaces, "_cholesky_whitening", lambda B: None)
    ref = fit_ntps(moments, y, 4, options=options)
    # The trailing directions (generalized eigenvalues near zero) are set by
    # rounding on either path: compare the curves where the subspace is determined.
    head = slice(0, 36)
    for variant in VARIANTS:
        np.testing.assert_allclose(fast.curve(variant)[head], ref.curve(variant)[head],
                                   atol=1e-9)
    np.testing.assert_allclose(fast.excess_loss()[head], ref.excess_loss()[head], atol=1e-9)
    np.testing.assert_allclose(np.abs(fast.components(5).T @ ref.components(5)), np.eye(5),
                               atol=1e-8)
