import numpy as np
import pytest

from sklearn_ntps.choice.partitions import (
    block_partitions,
    feature_scale,
    stratified_blocks,
    study_pool,
)


@pytest.mark.parametrize("seed", range(5))
def test_blocks_are_disjoint_stratified_and_cover_every_text(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, size=503)
    blocks = stratified_blocks(y, 10, random_state=seed)
    everything = np.concatenate(blocks)
    assert np.array_equal(np.sort(everything), np.arange(503))  # each text exactly once
    for c in range(7):
        per_block = [int((y[b] == c).sum()) for b in blocks]
        assert max(per_block) - min(per_block) <= 1


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
    with pytest.raises(ValueError, match="6 distinct partitions"):
        block_partitions(4, 2, 7)
    with pytest.raises(ValueError, match="n_test_blocks"):
        block_partitions(4, 4, 1)
    with pytest.raises(ValueError, match="n_blocks"):
        stratified_blocks([0, 1], 3)


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
