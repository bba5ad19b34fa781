import numpy as np
import pytest

from sklearn_ntps.states import moments as moments_module
from sklearn_ntps.states.moments import (
    MomentAccumulator,
    TokenIndex,
    check_token_states,
    compute_moments,
    pool,
    pooled_features,
)
from sklearn_ntps.states.statistics import Moments

from builders import make_texts


def brute_force_moments(X):
    """The spec's definitions, one token at a time."""
    d = X[0].shape[1]
    c0, c1, pooled, pairs = np.zeros((d, d)), np.zeros((d, d)), [], 0
    for H in X:
        pooled.append(H.mean(axis=0))
        for t in range(H.shape[0] - 1):
            c = H[: t + 1].sum(axis=0)
            c0 += np.outer(c, c)
            c1 += np.outer(c, H[t + 1])
            pairs += 1
    return np.array(pooled), c0, c1, pairs


def test_moments_match_per_token_loops():
    X, _ = make_texts(n_texts=60, n_features=7, min_len=1, max_len=15, seed=3)
    pooled, c0, c1, pairs = brute_force_moments(X)
    m = compute_moments(X)
    assert m.n_pairs == pairs
    np.testing.assert_allclose(m.pooled, pooled, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.c0, c0, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(m.c1, c1, rtol=1e-10, atol=1e-8)
    C0, _ = m.autoregressive_covariances()
    np.testing.assert_allclose(C0, c0 / 60, rtol=1e-10, atol=1e-8)


def test_chunking_does_not_change_moments(monkeypatch):
    X, _ = make_texts(n_texts=50, n_features=5, seed=1)
    whole = compute_moments(X)
    monkeypatch.setattr(moments_module, "_CHUNK_TOKENS", 7)
    chunked = compute_moments(X)
    np.testing.assert_allclose(chunked.c0, whole.c0, rtol=1e-12)
    np.testing.assert_allclose(chunked.c1, whole.c1, rtol=1e-12)
    np.testing.assert_array_equal(chunked.pooled, whole.pooled)


def test_shards_add_up_to_the_whole():
    X, _ = make_texts(n_texts=40, n_features=6, seed=2)
    whole = compute_moments(X)
    merged = compute_moments(X[:13]) + compute_moments(X[13:29]) + compute_moments(X[29:])
    np.testing.assert_allclose(merged.c0, whole.c0, rtol=1e-12)
    np.testing.assert_allclose(merged.c1, whole.c1, rtol=1e-12)
    np.testing.assert_allclose(merged.pooled, whole.pooled)
    assert merged.n_pairs == whole.n_pairs and len(merged) == len(whole)

    acc_a, acc_b = MomentAccumulator(), MomentAccumulator()
    acc_a.update(np.concatenate(X[:20]), [len(x) for x in X[:20]])
    acc_b.update(np.concatenate(X[20:]), [len(x) for x in X[20:]])
    m = (acc_a.statistics() + acc_b.statistics()).layer(0)
    np.testing.assert_allclose(m.c0, whole.c0, rtol=1e-12)
    np.testing.assert_allclose(m.pooled, whole.pooled)


def test_all_layers_at_once_equal_each_layer_alone():
    rng = np.random.default_rng(0)
    lengths = [3, 1, 6, 2]
    states = rng.normal(size=(3, sum(lengths), 4)).astype(np.float32)
    acc = MomentAccumulator()
    acc.update(states, lengths)
    for layer in range(3):
        per_text = np.split(states[layer], np.cumsum(lengths)[:-1])
        alone = compute_moments(per_text)
        got = acc.moments(layer)
        assert got.c0.dtype == np.float64
        np.testing.assert_allclose(got.c0, alone.c0, rtol=1e-12)
        np.testing.assert_allclose(got.c1, alone.c1, rtol=1e-12)
        np.testing.assert_allclose(got.pooled, alone.pooled, rtol=1e-12)


def test_memory_does_not_grow_with_tokens():
    rng = np.random.default_rng(0)
    d, n_layers = 6, 2
    acc = MomentAccumulator()
    for _ in range(5):
        acc.update(rng.normal(size=(n_layers, 500, d)), [250, 250])
    held = acc._c0.nbytes + acc._c1.nbytes + sum(p.nbytes for p in acc._pooled["mean"])
    assert held == 8 * (2 * n_layers * d * d + n_layers * acc.n_texts * d)


def test_last_token_pooling():
    X = [np.arange(6.0).reshape(3, 2), np.array([[7.0, 8.0]])]
    np.testing.assert_array_equal(pooled_features(X, pooling="last"), [[4, 5], [7, 8]])
    np.testing.assert_array_equal(compute_moments(X, pooling="last").pooled, [[4, 5], [7, 8]])
    np.testing.assert_array_equal(pooled_features(X), [[2, 3], [7, 8]])


def test_pooled_rows_place_each_text_where_asked():
    X, _ = make_texts(n_texts=7, n_features=3)
    acc = MomentAccumulator(pooling=("mean", "last"), autoregressive=False)
    for batch in (X[:3], X[3:5], X[5:]):
        acc.update(np.concatenate(batch), [len(h) for h in batch])
    rows = np.array([4, 0, 6, 2, 1, 5, 3])  # the i-th text added goes to row rows[i]
    for p in ("mean", "last"):
        placed = acc.pooled(p, rows=rows)
        np.testing.assert_array_equal(placed[:, rows], acc.pooled(p))
    np.testing.assert_array_equal(acc.statistics(rows=rows).pooled["mean"][:, rows],
                                  acc.statistics().pooled["mean"])


def test_one_token_texts_add_no_pairs():
    m = compute_moments([np.ones((1, 3)), np.ones((1, 3))])
    assert m.n_pairs == 0 and not m.c0.any() and len(m) == 2


@pytest.mark.parametrize(
    "X, match",
    [
        ([], "empty"),
        ([np.ones((2, 3)), np.ones((0, 3))], "Text 1 has 0 tokens"),
        ([np.ones((2, 3)), np.ones((2, 4))], "Inconsistent n_features: text 1 has 4"),
        ([np.ones((2, 3)), np.array([[1.0, np.nan, 0.0]])],
         "NaN or infinity in the hidden states of text 1"),
        ([np.array([[np.inf, 0.0]])], "NaN or infinity in the hidden states of text 0"),
        (np.ones((4, 3)), "shape \\(4, 3\\)"),
        ("some text", "sequence of 2-D arrays"),
        ([np.ones(3)], "Text 0 has shape \\(3,\\)"),
        ([[["a", "b"]]], "Text 0 is not a numeric array"),
        ([np.ones((2, 0))], "0 features"),
    ],
)
def test_bad_states_raise_clear_errors(X, match):
    with pytest.raises(ValueError, match=match):
        check_token_states(X)


def test_states_are_not_mutated():
    X, _ = make_texts(n_texts=10, n_features=3)
    before = [x.copy() for x in X]
    compute_moments(X)
    pooled_features(X)
    for a, b in zip(X, before):
        np.testing.assert_array_equal(a, b)


def test_update_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="sum to the number of tokens"):
        MomentAccumulator().update(np.ones((5, 2)), [2, 2])
    with pytest.raises(ValueError, match="pooling"):
        MomentAccumulator(pooling="max")


def test_non_finite_states_stop_the_accumulator():
    states = np.ones((2, 5, 3))
    states[1, 1, 0] = np.inf  # a middle token: only the moments see it
    with pytest.raises(ValueError, match="NaN or infinity"):
        MomentAccumulator(pooling="last").update(states, [3, 2])


def test_first_order_sums_match_per_token_loops():
    X, _ = make_texts(n_texts=40, n_features=5, min_len=1, max_len=9, seed=21)
    m = compute_moments(X)
    ctx = np.vstack([np.cumsum(H, axis=0)[:-1] for H in X if len(H) > 1])
    nxt = np.vstack([H[1:] for H in X if len(H) > 1])
    np.testing.assert_allclose(m.context_sum, ctx.sum(0), rtol=1e-12)
    np.testing.assert_allclose(m.target_sum, nxt.sum(0), rtol=1e-12)
    merged = compute_moments(X[:17]) + compute_moments(X[17:])
    np.testing.assert_allclose(merged.context_sum, m.context_sum, rtol=1e-12)
    assert merged.has_first_order and not Moments(m.pooled, m.c0, m.c1, m.n_pairs).has_first_order


def test_precision_comes_from_the_dtype_of_the_states():
    from sklearn_ntps.states.moments import unit_roundoff

    X, _ = make_texts(n_texts=10, n_features=3, seed=23)
    half = compute_moments([x.astype(np.float16) for x in X])
    assert half.precision == unit_roundoff(np.float16) == np.finfo(np.float16).eps / 2
    assert compute_moments(X).precision == unit_roundoff(np.float32)
    assert (compute_moments(X) + half).precision == half.precision
    acc = MomentAccumulator(precision=unit_roundoff(np.float16))   # bf16 states arrive as float32
    acc.update(np.ones((4, 3), dtype=np.float32), [2, 2])
    assert acc.moments().precision == unit_roundoff(np.float16)


def test_torch_states_are_summed_on_their_device_and_match_numpy():
    # The GPU path: the same accumulator on tensors (here on the CPU device).
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(24)
    lengths = rng.integers(1, 12, size=50)
    states = rng.normal(size=(3, lengths.sum(), 6)).astype(np.float32)
    ref = MomentAccumulator(pooling=("mean", "last"))
    ref.update(states, lengths)
    got = MomentAccumulator(pooling=("mean", "last"))
    got.update(torch.from_numpy(states), lengths)
    assert got._c0.dtype == torch.float64 and isinstance(got._c0, torch.Tensor)
    a, b = ref.statistics().to_arrays(), got.statistics().to_arrays()
    for name in ("pooled_mean", "pooled_last", "c0", "c1", "first"):
        assert isinstance(b[name], np.ndarray)
        np.testing.assert_allclose(b[name], a[name], rtol=1e-12, atol=1e-12 * np.abs(a[name]).max())
    assert b["n_pairs"] == a["n_pairs"] and b["precision"] == a["precision"]
    half = MomentAccumulator()
    half.update(torch.ones(4, 3, dtype=torch.float16), [2, 2])
    assert half.precision == np.finfo(np.float16).eps / 2
    # Shards from a device and from the host merge on the host.
    merged = got.statistics() + ref.statistics()
    np.testing.assert_allclose(merged.c0, 2 * a["c0"], rtol=1e-12)
    bad = torch.from_numpy(states.copy())
    bad[0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        MomentAccumulator().update(bad, lengths)


def test_the_pooling_rule_is_the_same_on_any_array_api():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(25)
    lengths = rng.integers(1, 9, size=20)
    states = rng.normal(size=(lengths.sum(), 5))
    for pooling in ("mean", "last"):
        ref = pool(states, TokenIndex(lengths), pooling)
        got = pool(torch.from_numpy(states), TokenIndex(lengths, xp=torch), pooling)
        np.testing.assert_array_equal(got.numpy(), ref)
        per_text = np.split(states, np.cumsum(lengths)[:-1])
        expected = [t.mean(0) if pooling == "mean" else t[-1] for t in per_text]
        np.testing.assert_allclose(ref, expected, rtol=1e-12)
    # pooled_features and compute_moments follow the one rule, to the bit.
    np.testing.assert_array_equal(pooled_features(per_text), compute_moments(per_text).pooled)
