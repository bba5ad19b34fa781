import numpy as np
import pytest

from sklearn_ntps.choice.protocol import block_partitions, feature_scale, study_pool
from sklearn_ntps.splits import stratified_blocks


@pytest.mark.parametrize("n_blocks, n_test, n_rep", [(10, 3, 3), (5, 1, 5), (4, 2, 6)])
def test_each_replicate_trains_and_tests_on_disjoint_duplicate_free_texts(n_blocks, n_test, n_rep):
    y = np.repeat(np.arange(4), 25)
    blocks = stratified_blocks(y, n_blocks, random_state=1)
    partitions = block_partitions(n_blocks, n_test, n_rep, random_state=1)
    assert len({tuple(te) for _, te in partitions}) == n_rep  # distinct partitions
    for train, test in partitions:
        tr = np.concatenate([blocks[b] for b in train])
        te = np.concatenate([blocks[b] for b in test])
        assert len(set(tr.tolist())) == tr.size and len(set(te.tolist())) == te.size
        assert not set(tr.tolist()) & set(te.tolist())
        assert tr.size + te.size == y.size and len(test) == n_test


def test_partition_counts_are_checked():
    with pytest.raises(ValueError, match="between 1 and 6, the distinct partitions"):
        block_partitions(4, 2, 7)
    with pytest.raises(ValueError, match="n_test_blocks"):
        block_partitions(4, 4, 1)


def test_study_pool_caps_classes_and_keeps_enough_per_class():
    y = np.repeat(np.arange(12), [5, 40, 40, 40, 40, 40, 40, 200, 40, 40, 40, 3])
    pool = study_pool(y, n_texts=300, min_per_class=30, max_classes=6, random_state=0)
    kept, counts = np.unique(y[pool], return_counts=True)
    assert kept.size == 6 and not {0, 11} & set(kept.tolist())
    assert counts.min() >= 30
    assert np.array_equal(pool, np.unique(pool))
    again = study_pool(y, n_texts=300, min_per_class=30, max_classes=6, random_state=0)
    assert np.array_equal(pool, again)


def test_feature_scale_standardises_and_leaves_constant_features():
    X = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 6.0]])
    np.testing.assert_allclose(feature_scale(X), [1.0, 1.0, 0.5])


def test_interval_is_students_t_around_the_whole_value():
    from scipy.stats import t as student_t

    from sklearn_ntps.choice.protocol import interval

    blocks = np.array([0.1, 0.2, 0.3, 0.4])
    half = student_t.ppf(0.975, 3) * blocks.std(ddof=1) / 2
    cell = interval(0.5, blocks)
    assert (cell["low"], cell["high"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert cell["block_mean"] == pytest.approx(0.25) and cell["n"] == 4


def test_noise_set_by_hand():
    from sklearn_ntps.choice.protocol import noise_set

    # Shuffles: pair 0 reads 0, 1, 2 (mean 1, sd 1); pair 1 reads 0, 0, 3 (mean 1, sd 1.73).
    shuffles = [[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]]
    out = noise_set([5.0, 2.0], [[5.0, 5.1, 4.9], [2.0, 2.1, 1.9]], shuffles, pick=0)
    assert out["z"] == pytest.approx([4.0, 1 / np.sqrt(3)])
    assert out["threshold"] == pytest.approx(2 / np.sqrt(3))  # pair 1's third shuffle
    assert out["leaves_chance"] and out["within"].tolist() == [True, False]
    # A pick no further from chance than some shuffle: every pair is within noise.
    out = noise_set([1.5, 2.0], [[1.5, 1.6, 1.4], [2.0, 2.1, 1.9]], shuffles, pick=0)
    assert out["leaves_chance"] is False and out["within"].tolist() == [True, True]


def test_model_choice_best_layer_against_layer_mean():
    from sklearn_ntps.choice.protocol import model_choice

    rows = [{"model": "a", "layer": i, "s": v} for i, v in enumerate([0.9, 0.1, 0.1])]
    rows += [{"model": "b", "layer": i, "s": v} for i, v in enumerate([0.5, 0.6, 0.5])]
    chosen, row = model_choice(rows, "s", "best-layer")
    assert (row["model"], row["layer"]) == ("a", 0) and len(chosen) == 3
    chosen, row = model_choice(rows, "s", "layer-mean")
    assert (row["model"], row["layer"]) == ("b", 1)


def test_the_test_blocks_take_the_training_blocks_scale():
    from sklearn_ntps import compute_moments
    from sklearn_ntps.choice.protocol import footed_partition

    rng = np.random.default_rng(0)
    parts = [compute_moments([rng.normal(size=(3, 2)) * [1.0, 10.0] for _ in range(6)])
             for _ in range(3)]
    moments, X_test = footed_partition(parts, [0, 1], [2])
    sd = np.concatenate([parts[0].pooled, parts[1].pooled]).std(axis=0)
    np.testing.assert_allclose(moments.pooled.std(axis=0), [1.0, 1.0])
    np.testing.assert_allclose(X_test, parts[2].pooled / sd)


def test_layer_ranges():
    from sklearn_ntps.choice.protocol import layer_ranges

    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "layers 0-2 and 5 and 7-8"
    assert layer_ranges([]) == "no layer"
