"""Stage 2 of the data flow: hidden states -> moments.

NTPS needs, per layer, only sufficient statistics of the token hidden states:

* the pooled feature of every text (one row per text), for the perception side;
* the autoregressive moments ``C0 = sum c_t c_t^T`` and ``C1 = sum c_t h_{t+1}^T``
  over all texts, where ``c_t = h_1 + ... + h_t`` is the linear context.

They are sums, so they stream (memory ``O(n d + d^2)`` whatever the number of
tokens) and the moments of two shards add up to the moments of the whole.
Everything is accumulated in float64 whatever the dtype of the states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POOLINGS = ("mean", "last")

# Tokens per chunk when a list of per-text arrays is streamed: large enough for
# BLAS to run near peak, small enough that the float64 copy stays a few MB.
_CHUNK_TOKENS = 8192


@dataclass(frozen=True, eq=False)
class Moments:
    """NTPS sufficient statistics of one layer over a set of texts.

    This is what :class:`~sklearn_ntps.NTPSScorer` and
    :class:`~sklearn_ntps.NTPSSubspaceProbe` accept in place of per-text
    hidden states, and what ``HFEmbeddingTransformer(output="tokens")``
    returns. ``len(moments)`` is the number of texts.

    Parameters
    ----------
    pooled : ndarray of shape (n_texts, n_features)
        Pooled hidden state of each text (mean over its tokens by default).
    c0 : ndarray of shape (n_features, n_features)
        Sum over texts and positions ``t = 1 .. T_i - 1`` of ``c_t c_t^T``.
    c1 : ndarray of shape (n_features, n_features)
        Sum over texts and positions of ``c_t h_{t+1}^T``.
    n_pairs : int
        Number of (context, next token) pairs summed into ``c0`` and ``c1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.moments import compute_moments
    >>> rng = np.random.default_rng(0)
    >>> states = [rng.normal(size=(t, 4)) for t in (3, 5, 1)]
    >>> m = compute_moments(states)
    >>> len(m), m.n_features, m.n_pairs
    (3, 4, 6)
    >>> whole = compute_moments(states[:2]) + compute_moments(states[2:])
    >>> bool(np.allclose(whole.c0, m.c0))
    True
    """

    pooled: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    n_pairs: int

    def __len__(self) -> int:
        return self.pooled.shape[0]

    @property
    def n_features(self) -> int:
        return self.pooled.shape[1]

    def autoregressive_covariances(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C0, C1)`` normalised by the number of texts, as in the spec."""
        n = max(len(self), 1)
        return self.c0 / n, self.c1 / n

    def __add__(self, other: Moments) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        if other.n_features != self.n_features:
            raise ValueError(
                f"Cannot merge moments of {self.n_features} and {other.n_features} features."
            )
        return Moments(
            pooled=np.vstack([self.pooled, other.pooled]),
            c0=self.c0 + other.c0,
            c1=self.c1 + other.c1,
            n_pairs=self.n_pairs + other.n_pairs,
        )


class MomentAccumulator:
    """Streaming, mergeable accumulator of :class:`Moments` for several layers.

    Feed it batches of packed token states: the valid tokens of a batch of
    texts concatenated text after text, with the length of each text. All
    layers of a batch are processed at once: one cumulative sum for the
    contexts, then one matrix product per moment over all valid tokens.

    Parameters
    ----------
    pooling : {"mean", "last"}, default="mean"
        How a text's token states are reduced to its pooled feature.

    Examples
    --------
    >>> import numpy as np
    >>> acc = MomentAccumulator()
    >>> states = np.arange(24, dtype=np.float32).reshape(2, 6, 2)  # 2 layers, 6 tokens
    >>> acc.update(states, lengths=[4, 2])
    >>> acc.n_texts, acc.n_layers
    (2, 2)
    >>> acc.moments(layer=-1).pooled
    array([[15., 16.],
           [21., 22.]])
    """

    def __init__(self, *, pooling: str = "mean"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.pooling = pooling
        self._pooled: list[np.ndarray] = []
        self._c0: np.ndarray | None = None
        self._c1: np.ndarray | None = None
        self.n_pairs = 0

    @property
    def n_texts(self) -> int:
        return sum(p.shape[1] for p in self._pooled)

    @property
    def n_layers(self) -> int:
        return 0 if self._c0 is None else self._c0.shape[0]

    def update(self, states, lengths) -> None:
        """Add a batch of texts.

        Parameters
        ----------
        states : array-like of shape (n_layers, n_tokens, n_features) or (n_tokens, n_features)
            Valid token states of the batch, packed: text after text, in order.
        lengths : array-like of int, shape (n_texts,)
            Number of tokens of each text; they sum to ``n_tokens``. Every
            length must be at least 1.
        """
        states = np.asarray(states, dtype=np.float64)
        if states.ndim == 2:
            states = states[np.newaxis]
        lengths = np.asarray(lengths, dtype=np.intp)
        n_layers, n_tokens, d = states.shape
        if lengths.sum() != n_tokens or (lengths < 1).any():
            raise ValueError("lengths must be >= 1 and sum to the number of tokens.")
        if self._c0 is None:
            self._c0 = np.zeros((n_layers, d, d))
            self._c1 = np.zeros((n_layers, d, d))
        elif self._c0.shape[:2] != (n_layers, d):
            raise ValueError(
                f"Batch has {n_layers} layers of {d} features, "
                f"expected {self._c0.shape[0]} of {self._c0.shape[1]}."
            )
        ends = np.cumsum(lengths)
        starts = ends - lengths
        self._pooled.append(_pool(states, lengths, self.pooling))
        # One cumsum over the packed batch; subtracting the running total at
        # each text's start turns it into per-text prefix sums c_t.
        contexts = np.cumsum(states, axis=1)
        offset = np.zeros((n_layers, len(lengths), d))
        offset[:, 1:] = contexts[:, starts[1:] - 1]
        contexts -= np.repeat(offset, lengths, axis=1)
        # The last token of a text has no next token: zeroing its context
        # drops that pair, so both products run on views, without gathering.
        contexts[:, ends - 1] = 0.0
        for layer in range(n_layers):
            ctx = contexts[layer]
            # ctx.T @ ctx on one 2-D buffer lets NumPy call the symmetric syrk.
            self._c0[layer] += ctx.T @ ctx
            self._c1[layer] += ctx[:-1].T @ states[layer, 1:]
        self.n_pairs += n_tokens - len(lengths)

    def merge(self, other: MomentAccumulator) -> MomentAccumulator:
        """Add the texts of ``other`` (a shard) after those of ``self``; return self."""
        if other._c0 is None:
            return self
        if self._c0 is None:
            self._c0, self._c1 = other._c0.copy(), other._c1.copy()
        else:
            if self._c0.shape != other._c0.shape:
                raise ValueError("Cannot merge accumulators of different shapes.")
            self._c0 += other._c0
            self._c1 += other._c1
        self._pooled.extend(other._pooled)
        self.n_pairs += other.n_pairs
        return self

    def moments(self, layer: int = 0) -> Moments:
        """The accumulated :class:`Moments` of one layer."""
        if self._c0 is None:
            raise ValueError("No texts were accumulated.")
        pooled = np.concatenate([p[layer] for p in self._pooled], axis=0)
        return Moments(
            pooled=pooled, c0=self._c0[layer].copy(), c1=self._c1[layer].copy(),
            n_pairs=self.n_pairs,
        )


def check_token_states(X) -> list[np.ndarray]:
    """Validate per-text hidden states and return them as 2-D float arrays.

    Raises a ``ValueError`` naming the problem and the offending text.
    """
    if isinstance(X, np.ndarray):
        if X.ndim == 3:
            X = list(X)
        else:
            raise ValueError(
                "X must be a sequence of 2-D arrays of token hidden states, one "
                "(n_tokens_i, n_features) array per text, or a 3-D array "
                f"(n_texts, n_tokens, n_features); got an array of shape {X.shape}. "
                "Pooled features alone do not carry the next-token statistics NTPS "
                "needs; pass token-level states (e.g. HFEmbeddingTransformer(output='tokens'))."
            )
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise ValueError(
            "X must be a sequence of 2-D arrays of token hidden states (one per text) "
            f"or a Moments object; got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: NTPS needs at least one text.")
    out = []
    for i, x in enumerate(X):
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Text {i} is not a numeric array: {exc}") from None
        if a.ndim != 2:
            raise ValueError(
                f"Text {i} has shape {a.shape}; each text must be a 2-D array "
                "(n_tokens, n_features)."
            )
        if a.shape[0] == 0:
            raise ValueError(f"Text {i} has 0 tokens; every text needs at least one.")
        if out and a.shape[1] != out[0].shape[1]:
            raise ValueError(
                f"Inconsistent n_features: text {i} has {a.shape[1]}, text 0 has "
                f"{out[0].shape[1]}."
            )
        if not np.isfinite(a).all():
            raise ValueError(f"Text {i} contains NaN or infinity.")
        out.append(a)
    if out[0].shape[1] == 0:
        raise ValueError("Hidden states have 0 features.")
    return out


def compute_moments(X, *, pooling: str = "mean") -> Moments:
    """Moments of per-text token hidden states (validated), streamed in chunks.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
        Token hidden states of each text, padding removed. A text with one
        token adds to the pooled features only. A :class:`Moments` object is
        checked and returned as is.
    pooling : {"mean", "last"}, default="mean"

    Returns
    -------
    Moments
    """
    if isinstance(X, Moments):
        if len(X) == 0:
            raise ValueError("X is empty: NTPS needs at least one text.")
        if not (np.isfinite(X.pooled).all() and np.isfinite(X.c0).all()
                and np.isfinite(X.c1).all()):
            raise ValueError("Moments contain NaN or infinity.")
        return X
    states = check_token_states(X)
    acc = MomentAccumulator(pooling=pooling)
    lengths = np.array([s.shape[0] for s in states])
    # Cut the list into chunks of about _CHUNK_TOKENS tokens (at least one text each).
    chunk_id = np.cumsum(lengths) // _CHUNK_TOKENS
    bounds = np.flatnonzero(np.diff(chunk_id)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(states)]):
        acc.update(np.concatenate(states[lo:hi]), lengths[lo:hi])
    return acc.moments()


def pooled_features(X, *, pooling: str = "mean") -> np.ndarray:
    """Pooled feature of each text, without the autoregressive moments.

    Parameters
    ----------
    X : sequence of ndarray of shape (n_tokens_i, n_features), or Moments
    pooling : {"mean", "last"}, default="mean"

    Returns
    -------
    ndarray of shape (n_texts, n_features), float64
    """
    if isinstance(X, Moments):
        return compute_moments(X).pooled
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    states = check_token_states(X)
    return _pool(np.concatenate(states), np.array([s.shape[0] for s in states]), pooling)


def _pool(states, lengths, pooling):
    """The pooling rule, for packed states of shape (..., n_tokens, n_features)."""
    ends = np.cumsum(lengths)
    if pooling == "last":
        return states[..., ends - 1, :]
    return np.add.reduceat(states, ends - lengths, axis=-2) / lengths[:, None]
