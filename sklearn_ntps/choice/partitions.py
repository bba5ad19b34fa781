"""How texts are split for evidence: stratified blocks, partitions of them, a study's pool.

A replicate of a study (or of the selector's margin) is one random partition of
a data set's texts into disjoint training and test blocks: no text on both
sides, none twice, every score and probe refitted on each. numpy only.
"""

from __future__ import annotations

from math import comb

import numpy as np


def stratified_blocks(y, n_blocks, random_state=0) -> list:
    """Split texts into ``n_blocks`` disjoint blocks with the class proportions of ``y``.

    Each class's texts are shuffled and dealt round the blocks from a random
    starting block, so every block holds ``n_c // n_blocks`` or one more of
    class ``c`` and small classes do not pile up in the first blocks.

    Parameters
    ----------
    y : array-like of shape (n_texts,)
    n_blocks : int
    random_state : int or numpy Generator

    Returns
    -------
    list of ndarray
        Sorted text indices of each block; together they hold each index once.

    Examples
    --------
    >>> from sklearn_ntps.choice.partitions import stratified_blocks
    >>> [b.tolist() for b in stratified_blocks([0, 0, 0, 0, 1, 1], 2)]
    [[1, 2, 4], [0, 3, 5]]
    """
    y = np.asarray(y)
    if not 2 <= n_blocks <= len(y):
        raise ValueError(f"n_blocks must be between 2 and the number of texts ({len(y)}), "
                         f"got {n_blocks}.")
    rng = np.random.default_rng(random_state)
    owner = np.empty(len(y), dtype=np.intp)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        owner[members] = (rng.integers(n_blocks) + np.arange(members.size)) % n_blocks
    return [np.flatnonzero(owner == b) for b in range(n_blocks)]


def block_partitions(n_blocks, n_test_blocks, n_replicates, random_state=0) -> list:
    """Distinct random partitions of ``n_blocks`` blocks into training and test blocks.

    Returns
    -------
    list of (train_blocks, test_blocks)
        Sorted block indices; each partition's two sides are disjoint and
        together hold every block once. No two partitions have the same test blocks.

    Examples
    --------
    >>> from sklearn_ntps.choice.partitions import block_partitions
    >>> [(tr.tolist(), te.tolist()) for tr, te in block_partitions(4, 1, 2)]
    [([0, 1, 2], [3]), ([0, 1, 3], [2])]
    """
    if not 1 <= n_test_blocks < n_blocks:
        raise ValueError(f"n_test_blocks must be between 1 and n_blocks - 1 ({n_blocks - 1}), "
                         f"got {n_test_blocks}.")
    if not 1 <= n_replicates <= comb(n_blocks, n_test_blocks):
        raise ValueError(f"{n_blocks} blocks have {comb(n_blocks, n_test_blocks)} distinct "
                         f"partitions with {n_test_blocks} test block(s); n_replicates must be "
                         f"between 1 and that, got {n_replicates}.")
    rng = np.random.default_rng(random_state)
    seen, out = set(), []
    while len(out) < n_replicates:
        test = tuple(sorted(rng.choice(n_blocks, n_test_blocks, replace=False).tolist()))
        if test not in seen:
            seen.add(test)
            out.append((np.setdiff1d(np.arange(n_blocks), test), np.array(test)))
    return out


def study_pool(y, *, n_texts, min_per_class, max_classes, random_state=0) -> np.ndarray:
    """The texts a study keeps of a data set: enough per class, a capped number of classes.

    Classes with fewer than ``min_per_class`` texts are left out; of the rest,
    at most ``max_classes`` are kept, drawn at random. Each kept class then
    gives ``max(min_per_class, floor(n_texts * share))`` texts (all it has if
    fewer), ``share`` being its share of the kept classes' texts.

    Returns
    -------
    ndarray
        Sorted indices into ``y``.

    Examples
    --------
    >>> from sklearn_ntps.choice.partitions import study_pool
    >>> y = [0] * 10 + [1] * 30 + [2] * 2
    >>> pool = study_pool(y, n_texts=20, min_per_class=4, max_classes=5)
    >>> [int((pool < 10).sum()), int(((pool >= 10) & (pool < 40)).sum()), int((pool >= 40).sum())]
    [5, 15, 0]
    """
    y = np.asarray(y)
    rng = np.random.default_rng(random_state)
    labels, counts = np.unique(y, return_counts=True)
    eligible = labels[counts >= min_per_class]
    if eligible.size < 2:
        raise ValueError(f"fewer than two classes have at least {min_per_class} texts.")
    if eligible.size > max_classes:
        eligible = np.sort(rng.choice(eligible, max_classes, replace=False))
    members = {c: np.flatnonzero(y == c) for c in eligible}
    total = sum(m.size for m in members.values())
    kept = []
    for m in members.values():
        want = max(min_per_class, int(n_texts * m.size / total))
        kept.append(rng.choice(m, min(want, m.size), replace=False))
    return np.sort(np.concatenate(kept))


def feature_scale(pooled) -> np.ndarray:
    """``1 / sd`` of each feature over the training texts (1 where a feature is constant).

    The probe standardises its features; every score reads the states under
    the same diagonal map (docs/validity.md, "equal footing").
    """
    sd = np.asarray(pooled, dtype=np.float64).std(axis=0)
    return np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 1.0)
