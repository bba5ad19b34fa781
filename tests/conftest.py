"""Shared synthetic hidden states with known structure."""

import numpy as np
import pytest

from sklearn_ntps.datasets import make_token_states


def make_texts(n_texts=200, n_features=8, *, n_classes=3, min_len=1, max_len=12, seed=0):
    """Random per-text token states with random lengths, and labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_texts)
    X = [rng.normal(size=(t, n_features)) for t in lengths]
    y = rng.integers(0, n_classes, size=n_texts)
    y[:n_classes] = np.arange(n_classes)
    return X, y


def make_block_texts(signal, *, n_texts=300, a=4, b=4, n_classes=3, seed=0, mirror=False):
    return make_token_states(
        signal, n_texts=n_texts, n_predictable=a, n_noise=b, n_classes=n_classes,
        mirror=mirror, random_state=seed,
    )


@pytest.fixture
def texts():
    return make_texts()
