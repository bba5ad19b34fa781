"""Synthetic token hidden states with a known answer, for examples and tests."""

import numpy as np

SIGNALS = ("predictable", "unpredictable")


def make_token_states(
    signal="predictable", *, n_texts=300, n_predictable=4, n_noise=4, n_classes=3,
    mirror=False, random_state=0,
):
    """Labelled per-text token states whose class rides on chosen dynamics.

    The first ``n_predictable`` features hold a per-text state repeated at
    every token (plus a little noise), so the next token is a linear function
    of the context; the last ``n_noise`` features are i.i.d. noise that no
    context predicts. ``signal`` says where the class lives:

    * ``"predictable"``: in the repeated state (high NTPS);
    * ``"unpredictable"``: in one "keyword" token at a random position of the
      noise block (low NTPS, although a linear probe on all features finds it).

    Parameters
    ----------
    signal : {"predictable", "unpredictable"}, default="predictable"
    n_texts : int, default=300
    n_predictable, n_noise : int, default=4
    n_classes : int, default=3
    mirror : bool, default=False
        Add, for every text, a copy with the noise block negated: every cross
        moment between the two blocks is then exactly zero, so with
        ``signal="predictable"`` NTPS at ``k = n_predictable`` is exactly 1.
    random_state : int, default=0

    Returns
    -------
    X : list of ndarray of shape (n_tokens_i, n_predictable + n_noise)
    y : ndarray of shape (n_texts,) (twice that with ``mirror``)

    Examples
    --------
    >>> from sklearn_ntps import ntps_score
    >>> from sklearn_ntps.datasets import make_token_states
    >>> X, y = make_token_states("predictable")
    >>> round(ntps_score(X, y, n_components=4, variant="whitened"), 2)
    0.99
    >>> X, y = make_token_states("unpredictable")
    >>> round(ntps_score(X, y, n_components=4, variant="whitened"), 2)
    0.0
    """
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}.")
    rng = np.random.default_rng(random_state)
    means_a = 3.0 * rng.normal(size=(n_classes, n_predictable))
    means_b = 3.0 * rng.normal(size=(n_classes, n_noise))
    X, y = [], []
    for i in range(n_texts):
        label = i % n_classes
        T = int(rng.integers(4, 12))
        state = rng.normal(size=n_predictable)
        if signal == "predictable":
            state += means_a[label]
        block_a = state + 0.05 * rng.normal(size=(T, n_predictable))
        block_b = rng.normal(size=(T, n_noise))
        if signal == "unpredictable":
            block_b[rng.integers(T)] += T * means_b[label]
        X.append(np.hstack([block_a, block_b]))
        y.append(label)
        if mirror:
            X.append(np.hstack([block_a, -block_b]))
            y.append(label)
    return X, np.array(y)
