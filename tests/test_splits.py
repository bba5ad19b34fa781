"""The one stratified split and the stratified blocks (sklearn_ntps.splits)."""

import numpy as np
import pytest

from sklearn_ntps.splits import stratified_blocks, stratified_split


def test_class_counts_follow_the_largest_remainders():
    # 7, 2 and 1 texts; 5 drawn: exact shares 3.5, 1.0, 0.5 -> floors 3, 1, 0, and the two
    # largest remainders (0.5 and 0.5) take the last slot between them, never class 1.
    y = np.array([0] * 7 + [1] * 2 + [2])
    counts = [np.bincount(y[stratified_split(y, 5, random_state=s)[0]], minlength=3).tolist()
              for s in range(20)]
    assert set(map(tuple, counts)) == {(4, 1, 0), (3, 1, 1)}


@pytest.mark.parametrize("seed", range(3))
def test_chosen_and_rest_partition_the_texts(seed):
    y = np.random.default_rng(seed).integers(0, 6, size=101)
    chosen, rest = stratified_split(y, 0.3, random_state=seed)
    assert chosen.size == 31  # a fraction is rounded up
    assert np.array_equal(np.sort(np.concatenate([chosen, rest])), np.arange(101))
    assert np.all(np.diff(chosen) > 0) and np.all(np.diff(rest) > 0)


def test_fewer_texts_than_classes_and_the_same_seed_the_same_split():
    y = np.repeat(np.arange(10), 3)
    a, _ = stratified_split(y, 4, random_state=7)
    b, _ = stratified_split(y, 4, random_state=7)
    assert np.array_equal(a, b) and a.size == 4
    assert np.bincount(y[a], minlength=10).max() == 1  # four classes, one text each


def test_keep_each_class_leaves_one_of_every_class_in_the_rest():
    y = np.array([0] * 5 + [1] + [2] * 3)
    chosen, rest = stratified_split(y, 6, keep_each_class=True)
    assert set(y[rest]) == {0, 1, 2}
    assert np.bincount(y[chosen], minlength=3).tolist() == [4, 0, 2]
    with pytest.raises(ValueError, match="at most 6"):
        stratified_split(y, 7, keep_each_class=True)


@pytest.mark.parametrize("size, message", [(11, "at most 10"), (1.5, r"\(0, 1\)")])
def test_impossible_sizes_are_refused(size, message):
    with pytest.raises(ValueError, match=message):
        stratified_split(np.arange(10) % 2, size)


def test_labels_of_any_type():
    chosen, _ = stratified_split(["b", "a", "b", "a", "b", "a"], 2)
    assert sorted(np.array(["b", "a", "b", "a", "b", "a"])[chosen]) == ["a", "b"]


@pytest.mark.parametrize("seed", range(5))
def test_blocks_are_disjoint_stratified_and_cover_every_text(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, size=503)
    blocks = stratified_blocks(y, 10, random_state=seed)
    assert np.array_equal(np.sort(np.concatenate(blocks)), np.arange(503))
    for c in range(7):
        per_block = [int((y[b] == c).sum()) for b in blocks]
        assert max(per_block) - min(per_block) <= 1


def test_block_counts_are_checked():
    with pytest.raises(ValueError, match="n_blocks"):
        stratified_blocks([0, 1], 3)
