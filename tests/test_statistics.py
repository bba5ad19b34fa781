"""sklearn_ntps.states.statistics: Moments and Statistics, the typed sums NTPS needs, and the one
way they add up (Statistics.concat). Known answers on states small enough to sum by hand."""

import numpy as np
import pytest

from sklearn_ntps.states.moments import MomentAccumulator, compute_moments
from sklearn_ntps.states.statistics import (
    FLOAT32_ROUNDOFF,
    Moments,
    Statistics,
    resample_blocks,
)

from builders import make_texts

# Two texts of two features: A has two tokens, one (context, next token) pair; B has one.
A = np.array([[1.0, 2.0], [3.0, 4.0]])
B = np.array([[5.0, 6.0]])


def test_the_moments_of_two_small_texts_by_hand():
    m = compute_moments([A, B])
    # Pooled: the mean of each text's tokens. The one pair: context c_1 = (1, 2), target (3, 4).
    np.testing.assert_array_equal(m.pooled, [[2.0, 3.0], [5.0, 6.0]])
    np.testing.assert_array_equal(m.c0, [[1.0, 2.0], [2.0, 4.0]])
    np.testing.assert_array_equal(m.c1, [[3.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(m.context_sum, [1.0, 2.0])
    np.testing.assert_array_equal(m.target_sum, [3.0, 4.0])
    assert (len(m), m.n_features, m.n_pairs, m.has_first_order) == (2, 2, 1, True)
    assert m.precision == FLOAT32_ROUNDOFF == 2.0**-24  # float64 states count as upcast float32
    # The spec's C0 and C1 are the sums over the number of texts, 2 here.
    c0, c1 = m.autoregressive_covariances()
    np.testing.assert_array_equal(c0, [[0.5, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(c1, [[1.5, 2.0], [3.0, 4.0]])


def test_scaled_moments_are_those_of_the_scaled_states():
    m = compute_moments([A, B]).scaled([1.0, 10.0])
    np.testing.assert_array_equal(m.pooled, [[2.0, 30.0], [5.0, 60.0]])
    np.testing.assert_array_equal(m.c0, [[1.0, 20.0], [20.0, 400.0]])
    np.testing.assert_array_equal(m.c1, [[3.0, 40.0], [60.0, 800.0]])
    np.testing.assert_array_equal(m.context_sum, [1.0, 20.0])
    np.testing.assert_array_equal(m.target_sum, [3.0, 40.0])
    assert (m.n_pairs, m.precision) == (1, FLOAT32_ROUNDOFF)
    direct = compute_moments([A * [1, 10], B * [1, 10]])
    for name in ("pooled", "c0", "c1", "context_sum", "target_sum"):
        np.testing.assert_array_equal(getattr(m, name), getattr(direct, name))
    # Without the first-order sums, none are made up.
    bare = Moments(m.pooled, m.c0, m.c1, m.n_pairs).scaled([2.0, 2.0])
    assert not bare.has_first_order and bare.context_sum is None
    np.testing.assert_array_equal(bare.c0, 4 * m.c0)
    with pytest.raises(ValueError, match=r"one value per feature \(2\), got shape \(3,\)"):
        m.scaled([1.0, 2.0, 3.0])


def test_moments_add_text_after_text():
    a, b = compute_moments([A]), compute_moments([B])
    for both in (a + b, sum([a, b])):
        np.testing.assert_array_equal(both.pooled, [[2.0, 3.0], [5.0, 6.0]])
        np.testing.assert_array_equal(both.c0, [[1.0, 2.0], [2.0, 4.0]])  # B has no pair
        assert (len(both), both.n_pairs) == (2, 1)
    np.testing.assert_array_equal((a + a).c1, [[6.0, 8.0], [12.0, 16.0]])
    with pytest.raises(TypeError):
        a + 1
    half = compute_moments([A.astype(np.float16)])
    assert (a + half).precision == (half + a).precision == 2.0**-11  # the coarser one


def test_resampled_blocks_by_hand():
    a, b = compute_moments([A]), compute_moments([B, A])
    got = resample_blocks([a, b], [0, 2])
    np.testing.assert_array_equal(got.pooled, [[5.0, 6.0], [2.0, 3.0]] * 2)
    np.testing.assert_array_equal(got.c0, 2 * np.array([[1.0, 2.0], [2.0, 4.0]]))
    np.testing.assert_array_equal(got.target_sum, [6.0, 8.0])
    assert (len(got), got.n_pairs) == (4, 2)


def hand_statistics(n_truncated=0, precision=FLOAT32_ROUNDOFF, layers=None):
    """Two layers, three texts, two features; every value a small integer."""
    pooled = np.arange(12.0).reshape(2, 3, 2)
    return Statistics(
        pooled={"mean": pooled, "last": pooled + 100}, precision=precision,
        c0=np.arange(8.0).reshape(2, 2, 2), c1=-np.arange(8.0).reshape(2, 2, 2),
        context_sum=np.array([[1.0, 2.0], [3.0, 4.0]]),
        target_sum=np.array([[5.0, 6.0], [7.0, 8.0]]), n_pairs=4, layers=layers,
        truncation_limit=32, n_truncated=n_truncated)


def test_statistics_shapes_and_one_layer():
    s = hand_statistics(layers=[3, 7])
    assert (s.n_layers, s.n_texts, s.n_features, len(s)) == (2, 3, 2, 3)
    assert s.layers == (3, 7) and s.has_moments and s.has_first_order
    m = s.layer(7, "last")
    np.testing.assert_array_equal(m.pooled, [[106.0, 107.0], [108.0, 109.0], [110.0, 111.0]])
    np.testing.assert_array_equal(m.c0, [[4.0, 5.0], [6.0, 7.0]])
    np.testing.assert_array_equal(m.c1, [[-4.0, -5.0], [-6.0, -7.0]])
    np.testing.assert_array_equal(m.target_sum, [7.0, 8.0])
    assert (m.n_pairs, m.precision) == (4, FLOAT32_ROUNDOFF)
    np.testing.assert_array_equal(s.layer(-2).pooled, s.features(3))
    # features() is a copy: writing to it leaves the statistics alone.
    f = s.features(3)
    f[:] = 0
    assert s.pooled["mean"][0, 0, 1] == 1.0
    assert hand_statistics().layers == (0, 1)


def test_reordered_moves_the_rows_and_keeps_the_sums():
    s = hand_statistics().reordered([2, 0, 1])
    np.testing.assert_array_equal(s.pooled["mean"][0], [[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(s.pooled["last"][1, 0], [110.0, 111.0])
    np.testing.assert_array_equal(s.c0, np.arange(8.0).reshape(2, 2, 2))
    assert s.n_pairs == 4


def test_concat_counts_and_metadata():
    a = hand_statistics(n_truncated=1)
    b = hand_statistics(n_truncated=2, precision=2.0**-11)
    both = Statistics.concat([a, b], counts=[2, 1])
    assert (both.n_texts, both.n_pairs, both.n_truncated) == (9, 12, 4)
    assert both.precision == 2.0**-11 and both.truncation_limit == 32
    np.testing.assert_array_equal(both.c0, 3 * a.c0)
    np.testing.assert_array_equal(both.context_sum, [[3.0, 6.0], [9.0, 12.0]])
    np.testing.assert_array_equal(both.pooled["mean"][1, :, 0],
                                  [6.0, 8.0, 10.0, 6.0, 8.0, 10.0, 6.0, 8.0, 10.0])
    skipped = Statistics.concat([a, b], counts=[0, 1])
    assert (skipped.n_texts, skipped.n_truncated) == (3, 2)
    with pytest.raises(ValueError, match="one non-negative count per block"):
        Statistics.concat([a, b], counts=[1])
    with pytest.raises(ValueError, match="one non-negative count per block"):
        Statistics.concat([a, b], counts=[-1, 2])


def test_statistics_need_pooled_features():
    with pytest.raises(ValueError, match="at least one pooling"):
        Statistics(pooled={})


# --- the sums of random states, shard by shard and block by block ------------------------------

def test_merging_incompatible_moments_fails():
    a = compute_moments([np.ones((2, 3))])
    b = compute_moments([np.ones((2, 4))])
    with pytest.raises(ValueError, match="Part 1 has 4 features, part 0 has 3"):
        a + b
    assert isinstance(a, Moments)


def test_resampled_blocks_equal_the_moments_of_the_repeated_texts():
    X, _ = make_texts(n_texts=30, n_features=4, min_len=1, max_len=8, seed=22)
    blocks = [X[:10], X[10:18], X[18:]]
    parts = [compute_moments(b) for b in blocks]
    got = resample_blocks(parts, [2, 0, 1])
    ref = compute_moments(blocks[0] + blocks[0] + blocks[2])
    np.testing.assert_allclose(got.c0, ref.c0, rtol=1e-12)
    np.testing.assert_allclose(got.c1, ref.c1, rtol=1e-12)
    np.testing.assert_allclose(got.context_sum, ref.context_sum, rtol=1e-12)
    np.testing.assert_array_equal(got.pooled, ref.pooled)
    assert got.n_pairs == ref.n_pairs and len(got) == 32
    with pytest.raises(ValueError, match="counts"):
        resample_blocks(parts, [0, 0, 0])


def layered_statistics(lengths, n_layers=3, d=4, seed=0, **params):
    """The statistics of random packed states, and the states themselves."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n_layers, sum(lengths), d)).astype(np.float32)
    acc = MomentAccumulator(pooling=("mean", "last"), **params)
    acc.update(states, lengths)
    return acc.statistics(), states


def test_statistics_of_shards_add_up_to_those_of_the_whole():
    lengths = [3, 1, 6, 2, 5]
    whole, states = layered_statistics(lengths)
    cut = sum(lengths[:2])
    parts = []
    for lo, hi, lens in ((0, cut, lengths[:2]), (cut, None, lengths[2:])):
        acc = MomentAccumulator(pooling=("mean", "last"))
        acc.update(states[:, lo:hi], lens)
        parts.append(acc.statistics())
    for merged in (parts[0] + parts[1], Statistics.concat(parts), sum(parts)):
        for p in ("mean", "last"):
            np.testing.assert_array_equal(merged.pooled[p], whole.pooled[p])
        for name in ("c0", "c1", "context_sum", "target_sum"):
            np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), rtol=1e-12)
        assert (merged.n_pairs, merged.n_texts, merged.layers) == (whole.n_pairs, 5, (0, 1, 2))
    # Each layer is the Moments of that layer's states alone.
    alone = compute_moments(np.split(states[1], np.cumsum(lengths)[:-1]), pooling="last")
    got = whole.layer(1, "last")
    np.testing.assert_allclose(got.c1, alone.c1, rtol=1e-12)
    np.testing.assert_array_equal(got.pooled, alone.pooled)
    assert got.n_pairs == alone.n_pairs == sum(lengths) - len(lengths)


def test_statistics_counts_repeat_blocks_as_resample_blocks_does():
    a, _ = layered_statistics([2, 4], seed=1)
    b, _ = layered_statistics([3], seed=2)
    twice = Statistics.concat([a, b], counts=[2, 1])
    np.testing.assert_allclose(twice.c0, 2 * a.c0 + b.c0, rtol=1e-12)
    np.testing.assert_array_equal(twice.pooled["mean"][:, :4], np.tile(a.pooled["mean"], (1, 2, 1)))
    assert twice.n_pairs == 2 * a.n_pairs + b.n_pairs and len(twice) == 2 * 2 + 1
    with pytest.raises(ValueError, match="counts"):
        Statistics.concat([a, b], counts=[0, 0])


def test_statistics_round_trip_through_the_cache_arrays():
    stats, _ = layered_statistics([3, 2, 4])
    stats = Statistics(**{**stats.__dict__, "layers": [0, 4, 7], "truncation_limit": 64,
                          "n_truncated": 1})
    arrays = stats.to_arrays()
    # The layout cache entries have had since version 4: read back as it was written.
    assert sorted(arrays) == ["c0", "c1", "first", "layers", "n_pairs", "n_truncated",
                              "pooled_last", "pooled_mean", "precision", "truncation_limit"]
    assert arrays["first"].shape == (3, 2, 4) and arrays["layers"] == [0, 4, 7]
    back = Statistics.from_arrays(arrays)
    for name in ("c0", "c1", "context_sum", "target_sum"):
        np.testing.assert_array_equal(getattr(back, name), getattr(stats, name))
    assert (back.layers, back.truncation_limit, back.n_truncated, back.n_pairs, back.precision) \
        == ((0, 4, 7), 64, 1, stats.n_pairs, stats.precision)
    # Entries written before the layers were spelled out said None for all of them.
    assert Statistics.from_arrays({**arrays, "layers": None}).layers == (0, 1, 2)
    pooled_only = Statistics.from_arrays({k: v for k, v in arrays.items()
                                          if k.startswith("pooled") or k == "precision"})
    assert not pooled_only.has_moments and pooled_only.to_arrays().keys() == {
        "pooled_mean", "pooled_last", "precision", "layers", "truncation_limit", "n_truncated"}


def test_statistics_layer_is_a_hidden_state_index_among_those_held():
    stats, states = layered_statistics([3, 2])
    kept = Statistics(**{**stats.__dict__, "layers": (0, 5, 9)})
    np.testing.assert_array_equal(kept.layer(5).c0, stats.layer(1).c0)
    np.testing.assert_array_equal(kept.layer(-1).c0, stats.layer(2).c0)
    np.testing.assert_array_equal(kept.features(9, "last"), states[2][[2, 4]])
    with pytest.raises(ValueError, match="Layer 1 is not among the layers held, \\[0, 5, 9\\]"):
        kept.layer(1)
    pooled_only, _ = layered_statistics([3, 2], autoregressive=False)
    with pytest.raises(ValueError, match="pooled features only"):
        pooled_only.layer(0)


def test_shards_extracted_otherwise_do_not_merge():
    a, _ = layered_statistics([3, 2])
    with pytest.raises(ValueError, match="at least one part"):
        Statistics.concat([])
    with pytest.raises(ValueError, match=r"layers=\[0, 1\].*layers=\[0, 1, 2\]"):
        a + layered_statistics([2], n_layers=2)[0]
    limited = Statistics(**{**a.__dict__, "truncation_limit": 3})
    with pytest.raises(ValueError, match="truncation_limit=3"):
        a + limited
    with pytest.raises(ValueError, match="holds pooled last/mean only, part 0 holds pooled "
                                         "last/mean and moments"):
        a + layered_statistics([2], autoregressive=False)[0]
    with pytest.raises(ValueError, match="Part 1 has 8 features, part 0 has 4"):
        a + layered_statistics([2], d=8)[0]
