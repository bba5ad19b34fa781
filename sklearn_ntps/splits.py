"""How labelled texts are split, in one place: a stratified split and stratified blocks.

Every stage that holds texts out (a data set's subsample, the command line's
held-out texts, LoRA's validation texts, the report's and the selector's
blocks) splits them here, so class proportions are kept the same way
everywhere, also where there are fewer texts than classes. numpy only: the
lowest layer (:mod:`sklearn_ntps.datasets`) uses it.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

__all__ = ["stratified_blocks", "stratified_split"]


def _allocate(counts, n, rng, cap) -> np.ndarray:
    """``n`` slots over classes in proportion to ``counts``, at most ``cap`` each.

    Largest remainders take the leftover slots, ties broken at random; slots a
    capped class cannot take go to the others the same way.
    """
    alloc = np.zeros(len(counts), dtype=int)
    while (left := n - alloc.sum()) > 0:
        room = cap - alloc
        open_ = room > 0
        weights = np.where(open_, counts, 0)
        exact = weights * left / weights.sum()
        add = np.minimum(np.floor(exact).astype(int), room)
        order = np.lexsort((rng.random_sample(len(counts)), add - exact))
        order = order[open_[order] & (add[order] < room[order])]
        add[order[: left - add.sum()]] += 1
        alloc += add
    return alloc


def stratified_split(y, size, *, random_state=0, keep_each_class=False):
    """Indices of ``size`` texts whose class counts follow ``y``'s, and of the rest.

    Each class gives its share of ``size`` (largest remainders take the
    leftover slots, ties at random), its texts drawn at random: unlike
    ``train_test_split(stratify=y)`` this also works when ``size`` is smaller
    than the number of classes, or a class has a single text.

    Parameters
    ----------
    y : array-like of shape (n_texts,)
        Class labels.
    size : int or float
        How many texts to draw: an int, or a float in (0, 1) taken as a
        fraction of the texts (rounded up).
    random_state : int, default=0
        Seeds the draw; the same seed and labels give the same split.
    keep_each_class : bool, default=False
        Leave at least one text of every class in the rest (a validation
        split whose training side must see every class).

    Returns
    -------
    chosen : ndarray of int
        Sorted indices of the drawn texts.
    rest : ndarray of int
        Sorted indices of the others.

    Raises
    ------
    ValueError
        When ``size`` asks for more texts than there are, or than
        ``keep_each_class`` leaves.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.splits import stratified_split
    >>> chosen, rest = stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 2, 2], 5)
    >>> np.bincount(np.asarray([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])[chosen]).tolist()
    [2, 2, 1]
    >>> sorted(chosen.tolist() + rest.tolist()) == list(range(10))
    True
    """
    y = np.asarray(y)
    n_texts = len(y)
    if isinstance(size, Real) and not isinstance(size, Integral):
        if not 0 < size < 1:
            raise ValueError(f"A fractional size must lie in (0, 1), got {size}.")
        size = int(np.ceil(size * n_texts))
    _, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    cap = counts - 1 if keep_each_class else counts
    if not 0 <= size <= cap.sum():
        most = "the texts" if not keep_each_class else "the texts less one of each class"
        raise ValueError(f"Cannot draw {size} of {n_texts} texts: at most {cap.sum()} "
                         f"({most}).")
    # RandomState keeps the bundled data sets' subsamples as they were drawn.
    rng = np.random.RandomState(random_state)
    alloc = _allocate(counts, size, rng, cap)
    picked = [rng.permutation(np.flatnonzero(codes == c))[:k] for c, k in enumerate(alloc)]
    chosen = np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.intp)
    return chosen, np.setdiff1d(np.arange(n_texts), chosen)


def stratified_blocks(y, n_blocks, random_state=0) -> list:
    """Split texts into ``n_blocks`` disjoint blocks with the class proportions of ``y``.

    Each class's texts are shuffled and dealt round the blocks from a random
    starting block, so every block holds ``n_c // n_blocks`` or one more of
    class ``c`` and small classes do not pile up in the first blocks.

    Parameters
    ----------
    y : array-like of shape (n_texts,)
        Class labels.
    n_blocks : int
        At least 2, at most the number of texts.
    random_state : int or numpy Generator
        Seeds the deal.

    Returns
    -------
    blocks : list of ndarray
        Sorted text indices of each block; together they hold each index once.

    Examples
    --------
    >>> from sklearn_ntps.splits import stratified_blocks
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
