"""sklearn_ntps.datasets._synthetic: make_token_states, token states whose label rides on known
dynamics. Its class means are re-derived from the seed; its mirror makes NTPS exactly 1."""

import numpy as np
import pytest

from sklearn_ntps import compute_moments, ntps_score
from sklearn_ntps.datasets import make_token_states


def class_means(X, y, columns):
    pooled = np.array([x.mean(axis=0) for x in X])[:, columns]
    return np.array([pooled[y == c].mean(axis=0) for c in np.unique(y)])


def drawn_means(seed=0, n_classes=3, a=4, b=4):
    """The class means the generator draws first from its seed: 3 N(0, 1), predictable block
    first, then the noise block."""
    rng = np.random.default_rng(seed)
    return 3.0 * rng.normal(size=(n_classes, a)), 3.0 * rng.normal(size=(n_classes, b))


def test_shapes_lengths_and_labels():
    X, y = make_token_states(n_texts=30, n_predictable=3, n_noise=5, n_classes=4, random_state=1)
    assert len(X) == 30 and y.tolist() == [i % 4 for i in range(30)]
    assert all(x.shape[1] == 8 and 4 <= x.shape[0] <= 11 for x in X)
    again, _ = make_token_states(n_texts=30, n_predictable=3, n_noise=5, n_classes=4,
                                 random_state=1)
    assert all(np.array_equal(u, v) for u, v in zip(X, again))  # seeded
    other, _ = make_token_states(n_texts=30, n_predictable=3, n_noise=5, n_classes=4,
                                 random_state=2)
    assert not np.array_equal(X[0][:2], other[0][:2])


def test_the_predictable_block_repeats_one_state_per_text():
    X, _ = make_token_states(n_texts=20)
    for x in X:
        # Each token is the text's state plus noise of sd 0.05: within 0.05 * 6 of the mean.
        assert np.abs(x[:, :4] - x[:, :4].mean(axis=0)).max() < 0.3
        assert x[:, 4:].std() > 0.3  # the noise block is i.i.d. N(0, 1)


def test_predictable_class_means_ride_on_the_repeated_state():
    X, y = make_token_states("predictable", n_texts=600)
    means_a, _ = drawn_means()
    # Per class, 200 texts of N(0, 1) states about the class mean: a standard error of 0.07.
    np.testing.assert_allclose(class_means(X, y, slice(0, 4)), means_a, atol=0.35)
    np.testing.assert_allclose(class_means(X, y, slice(4, 8)), 0.0, atol=0.35)


def test_unpredictable_class_means_ride_on_one_keyword_token():
    X, y = make_token_states("unpredictable", n_texts=600)
    _, means_b = drawn_means()
    # One token of T carries T times the class mean: the text's mean carries it once.
    np.testing.assert_allclose(class_means(X, y, slice(4, 8)), means_b, atol=0.35)
    np.testing.assert_allclose(class_means(X, y, slice(0, 4)), 0.0, atol=0.35)
    for x, label in zip(X[:10], y[:10]):
        offsets = x[:, 4:] - means_b[label] * len(x)
        keyword = np.argmin(np.abs(offsets).max(axis=1))
        assert np.abs(offsets[keyword]).max() < 5  # N(0, 1) noise left, where the keyword sits


def test_the_mirror_makes_ntps_one_at_the_predictable_block():
    X, y = make_token_states("predictable", n_texts=60, mirror=True)
    assert len(X) == 120 and y.tolist() == [i // 2 % 3 for i in range(120)]
    for x, twin in zip(X[::2], X[1::2]):
        np.testing.assert_array_equal(twin[:, :4], x[:, :4])
        np.testing.assert_array_equal(twin[:, 4:], -x[:, 4:])
    m = compute_moments(X)
    # The blocks' cross moments cancel pair by pair (up to rounding of the sums).
    scale = np.abs(m.c0).max()
    assert np.abs(m.c0[:4, 4:]).max() < 1e-12 * scale and np.abs(m.c1[:4, 4:]).max() < 1e-12 * scale
    assert ntps_score(X, y, n_components=4, variant="whitened") == pytest.approx(1.0, abs=1e-9)
    assert ntps_score(X, y, n_components=4, variant="paper") == pytest.approx(1.0, abs=1e-9)


def test_an_unknown_signal_is_refused():
    with pytest.raises(ValueError, match=r"signal must be one of \('predictable', "
                                         r"'unpredictable'\), got 'loud'"):
        make_token_states("loud")
