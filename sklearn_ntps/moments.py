"""Stage 2 of the data flow: hidden states -> moments.

NTPS needs, per layer, only sufficient statistics of the token hidden states:

* the pooled feature of every text (one row per text), for the perception side;
* the autoregressive moments ``C0 = sum c_t c_t^T`` and ``C1 = sum c_t h_{t+1}^T``
  over all texts, where ``c_t = h_1 + ... + h_t`` is the linear context.

They are sums, so they stream (memory ``O(n d + d^2)`` whatever the number of
tokens) and the moments of two shards add up to the moments of the whole.
Everything is accumulated in float64 whatever the dtype of the states, on the
device the states live on: the accumulator speaks the array API, so a CUDA
tensor's moments are summed on the GPU and only the d x d results come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.externals.array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_numpy_array,
)

POOLINGS = ("mean", "last")

# Tokens per chunk when a list of per-text arrays is streamed: large enough for
# BLAS to run near peak, small enough that the float64 copy stays a few MB.
_CHUNK_TOKENS = 8192
# Neural networks compute in float32 at best: float64 arrays are taken as upcast float32.
_FLOAT32_ROUNDOFF = float(np.finfo(np.float32).eps) / 2
_FIRST_ORDER = ("context_sum", "target_sum")
# Hidden states must lie within float32's range: beyond it the float64 moments
# (sums of squared contexts, fourth moments for Ledoit-Wolf) overflow, and below
# its smallest normal number their squares underflow.
_MAX_STATE = float(np.finfo(np.float32).max)
_MIN_STATE = float(np.finfo(np.float32).tiny)


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
    context_sum, target_sum : ndarray of shape (n_features,), default=None
        Sums over the same pairs of ``c_t`` and of ``h_{t+1}``: what centring
        (a next-token regression with an intercept) needs.
    precision : float, default=2**-24
        Unit roundoff of the dtype the hidden states were computed in (float32
        by default); it sets the numerical floor of the covariances.

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
    >>> bool(np.allclose(sum(compute_moments([s]) for s in states).c1, m.c1))
    True
    """

    pooled: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    n_pairs: int
    context_sum: np.ndarray | None = None
    target_sum: np.ndarray | None = None
    precision: float = _FLOAT32_ROUNDOFF

    def __len__(self) -> int:
        return self.pooled.shape[0]

    @property
    def n_features(self) -> int:
        return self.pooled.shape[1]

    @property
    def has_first_order(self) -> bool:
        """Whether the sums that centring needs are here."""
        return self.context_sum is not None and self.target_sum is not None

    def autoregressive_covariances(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C0, C1)`` normalised by the number of texts, as in the spec."""
        n = max(len(self), 1)
        return self.c0 / n, self.c1 / n

    def scaled(self, scale) -> Moments:
        """The moments of the states ``diag(scale) h``, each feature multiplied by its scale.

        A linear map of the hidden space passes through every sum exactly, so
        this is what extracting the rescaled states would give; a shift would
        not (the contexts are sums of a varying number of states).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_ntps.moments import compute_moments
        >>> states = [np.arange(6.0).reshape(3, 2)]
        >>> m = compute_moments(states).scaled([1.0, 10.0])
        >>> bool(np.allclose(m.c1, compute_moments([states[0] * [1, 10]]).c1))
        True
        """
        s = np.asarray(scale, dtype=np.float64)
        if s.shape != (self.n_features,):
            raise ValueError(f"scale must hold one value per feature ({self.n_features}), "
                             f"got shape {s.shape}.")
        outer = np.outer(s, s)
        first = {name: getattr(self, name) * s for name in _FIRST_ORDER} \
            if self.has_first_order else {}
        return Moments(pooled=self.pooled * s, c0=self.c0 * outer, c1=self.c1 * outer,
                       n_pairs=self.n_pairs, precision=self.precision, **first)

    def __add__(self, other: Moments) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        if other.n_features != self.n_features:
            raise ValueError(
                f"Cannot merge moments of {self.n_features} and {other.n_features} features."
            )
        return resample_blocks([self, other], [1, 1])

    def __radd__(self, other):
        # sum() of a stream of batches' moments starts from 0.
        return self if isinstance(other, int) and other == 0 else NotImplemented


def resample_blocks(parts: Sequence[Moments], counts) -> Moments:
    """The moments of blocks of texts drawn with replacement: block g taken ``counts[g]`` times.

    The autoregressive sums are not kept per text, so a bootstrap of the
    texts resamples whole blocks; the pooled rows of block g are repeated
    ``counts[g]`` times, block after block, as the labels must be.
    """
    counts = np.asarray(counts, dtype=np.intp)
    if len(parts) != len(counts) or (counts < 0).any() or counts.sum() == 0:
        raise ValueError("counts must be one non-negative count per block, not all zero.")
    taken = [(p, c) for p, c in zip(parts, counts) if c]
    first = all(p.has_first_order for p, _ in taken)
    extra = {name: sum(c * getattr(p, name) for p, c in taken) for name in _FIRST_ORDER} \
        if first else {}
    return Moments(
        pooled=np.concatenate([np.tile(p.pooled, (c, 1)) for p, c in taken]),
        c0=sum(c * p.c0 for p, c in taken), c1=sum(c * p.c1 for p, c in taken),
        n_pairs=int(sum(c * p.n_pairs for p, c in taken)),
        precision=max(p.precision for p, _ in taken), **extra,
    )


class MomentAccumulator:
    """Streaming, mergeable accumulator of :class:`Moments` for several layers.

    Feed it batches of packed token states: the valid tokens of a batch of
    texts concatenated text after text, with the length of each text. All
    layers of a batch are processed in one call: the prefix sums of every
    text at once (a loop over positions, never over texts), then one matrix
    product per moment over all valid tokens.

    Parameters
    ----------
    pooling : {"mean", "last"} or tuple of them, default="mean"
        How a text's token states are reduced to its pooled feature; with a
        tuple, every listed pooling is kept (the first is the default).
    autoregressive : bool, default=True
        Accumulate ``C0`` and ``C1``; False keeps the pooled features only.
    precision : float, default=None
        Unit roundoff of the dtype the states were computed in, when they
        arrive upcast (a bfloat16 model's states as float32); None reads it
        from the arrays. Never below float32's.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps import MomentAccumulator
    >>> acc = MomentAccumulator()
    >>> states = np.arange(24, dtype=np.float32).reshape(2, 6, 2)  # 2 layers, 6 tokens
    >>> acc.update(states, lengths=[4, 2])
    >>> acc.n_texts, acc.n_layers
    (2, 2)
    >>> acc.moments(layer=-1).pooled
    array([[15., 16.],
           [21., 22.]])
    """

    def __init__(self, *, pooling="mean", autoregressive: bool = True, precision=None):
        self.poolings = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        bad = [p for p in self.poolings if p not in POOLINGS]
        if bad or not self.poolings:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.autoregressive = autoregressive
        self.precision = max(_FLOAT32_ROUNDOFF, precision or 0.0)
        self._pooled: dict[str, list[np.ndarray]] = {p: [] for p in self.poolings}
        self._c0: np.ndarray | None = None
        self._c1: np.ndarray | None = None
        # Per layer: the sums of c_t and of h_{t+1} over the pairs.
        self._first: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None  # (n_layers, n_features)
        self.n_pairs = 0

    @property
    def n_texts(self) -> int:
        return sum(p.shape[1] for p in self._pooled[self.poolings[0]])

    @property
    def n_layers(self) -> int:
        return 0 if self._shape is None else self._shape[0]

    def update(self, states, lengths) -> None:
        """Add a batch of texts.

        Parameters
        ----------
        states : array of shape (n_layers, n_tokens, n_features) or (n_tokens, n_features)
            Valid token states of the batch, packed: text after text, in order.
            A numpy array, or any array-API array (a torch tensor on a GPU,
            say): the sums are then kept on its device, in float64.
        lengths : array-like of int, shape (n_texts,)
            Number of tokens of each text; they sum to ``n_tokens``. Every
            length must be at least 1.
        """
        if is_numpy_array(states) or not is_array_api_obj(states):
            states, xp = np.asarray(states), np
        else:
            xp = array_namespace(states)
        self.precision = max(self.precision, unit_roundoff(states.dtype, xp))
        if states.ndim == 2:
            states = states[None]
        lengths = np.asarray(lengths, dtype=np.intp)
        n_layers, n_tokens, d = states.shape
        if lengths.sum() != n_tokens or (lengths < 1).any():
            raise ValueError("lengths must be >= 1 and sum to the number of tokens.")
        self._check_shape((n_layers, d))
        dev = device(states)
        if self.autoregressive and self._c0 is None:
            self._c0 = xp.zeros((n_layers, d, d), dtype=xp.float64, device=dev)
            self._c1 = xp.zeros((n_layers, d, d), dtype=xp.float64, device=dev)
            self._first = xp.zeros((n_layers, 2, d), dtype=xp.float64, device=dev)
        ends = np.cumsum(lengths)
        # Position p of every text at least p + 1 long: a loop over positions
        # (not texts) builds all prefix sums with vectorised row additions.
        steps = [ends[lengths > p] - lengths[lengths > p] + p for p in range(1, lengths.max())]
        index = _Index(xp, dev, lengths, ends, steps)
        pooled = {p: xp.empty((n_layers, len(lengths), d), dtype=xp.float64, device=dev)
                  for p in self.poolings}
        # Non-finite states are caught below, once, instead of warning per layer.
        with np.errstate(invalid="ignore", over="ignore"):
            self._accumulate(xp, states, index, pooled)
        # A non-finite state spreads into every sum it touches: stop at once.
        finite = all(bool(xp.all(xp.isfinite(v))) for v in pooled.values())
        if not (finite and (self._c0 is None or bool(xp.all(xp.isfinite(self._c0))))):
            raise ValueError(
                "Hidden states contain NaN or infinity (a float16 overflow? try "
                "torch_dtype='float32'); nothing from this batch can be trusted."
            )
        for p in self.poolings:
            self._pooled[p].append(pooled[p])
        if self.autoregressive:
            self.n_pairs += n_tokens - len(lengths)

    def _accumulate(self, xp, states, index, pooled):
        # One layer at a time keeps the float64 copies in cache: the passes over
        # the states cost little next to the two matrix products.
        for layer in range(states.shape[0]):
            h = xp.astype(states[layer], xp.float64)
            contexts = xp.asarray(h, copy=True)
            for idx, prev in index.steps:
                contexts[idx] += contexts[prev]
            # A text's last prefix sum is the sum of its tokens: the mean for free.
            if "mean" in pooled:
                pooled["mean"][layer] = contexts[index.last] / index.lengths[:, None]
            if "last" in pooled:
                pooled["last"][layer] = h[index.last]
            if self.autoregressive:
                # The last token of a text has no next token: zeroing its
                # context drops that pair, so both products run on views.
                contexts[index.last] = 0.0
                self._c0[layer] += contexts.T @ contexts
                self._c1[layer] += contexts[:-1].T @ h[1:]
                self._first[layer, 0] += xp.sum(contexts, axis=0)
                self._first[layer, 1] += xp.sum(h, axis=0) - xp.sum(h[index.first], axis=0)

    def _check_shape(self, shape):
        if self._shape is None:
            self._shape = shape
        elif self._shape != shape:
            raise ValueError(
                f"Batch has {shape[0]} layers of {shape[1]} features, "
                f"expected {self._shape[0]} of {self._shape[1]}."
            )

    def merge(self, other: MomentAccumulator) -> MomentAccumulator:
        """Add the texts of ``other`` (a shard) after those of ``self``; return self."""
        if other._shape is None:
            return self
        if other.poolings != self.poolings or other.autoregressive != self.autoregressive:
            raise ValueError("Cannot merge accumulators with different settings.")
        self._check_shape(other._shape)
        if other._c0 is not None:
            # Shards may have run on different devices: their sums meet on the host.
            for name in ("_c0", "_c1", "_first"):
                mine = getattr(self, name)
                theirs = _to_numpy(getattr(other, name))
                setattr(self, name, theirs.copy() if mine is None else _to_numpy(mine) + theirs)
        self.precision = max(self.precision, other.precision)
        for p in self.poolings:
            self._pooled[p].extend(other._pooled[p])
        self.n_pairs += other.n_pairs
        return self

    def pooled(self, pooling: str | None = None) -> np.ndarray:
        """Pooled features of every layer, shape (n_layers, n_texts, n_features)."""
        if self._shape is None:
            raise ValueError("No texts were accumulated.")
        return np.concatenate([_to_numpy(p) for p in self._pooled[pooling or self.poolings[0]]],
                              axis=1)

    def moments(self, layer: int = 0, pooling: str | None = None) -> Moments:
        """The accumulated :class:`Moments` of one layer."""
        if not self.autoregressive:
            raise ValueError("This accumulator keeps pooled features only (autoregressive=False).")
        return moments_from_statistics(self.statistics(), layer, pooling or self.poolings[0])

    def statistics(self) -> dict:
        """Every layer's arrays, for storage: ``pooled_<pooling>``, ``c0``, ``c1``, ``first``
        (sums of ``c_t`` and ``h_{t+1}``), ``n_pairs``, ``precision``."""
        out = {f"pooled_{p}": self.pooled(p) for p in self.poolings}
        out["precision"] = self.precision
        if self.autoregressive:
            out.update(c0=_to_numpy(self._c0), c1=_to_numpy(self._c1),
                       first=_to_numpy(self._first), n_pairs=self.n_pairs)
        return out


def moments_from_statistics(stats, layer: int, pooling: str = "mean") -> Moments:
    """One layer's :class:`Moments` out of :meth:`MomentAccumulator.statistics` (or its cache)."""
    # np.array copies a memory-mapped cache slice into a plain array.
    first = np.array(stats["first"][layer])
    return Moments(
        pooled=np.array(stats[f"pooled_{pooling}"][layer]), c0=np.array(stats["c0"][layer]),
        c1=np.array(stats["c1"][layer]), n_pairs=int(stats["n_pairs"]),
        context_sum=first[0], target_sum=first[1], precision=float(stats["precision"]),
    )


class _Index:
    """A batch's token positions, as index arrays on the states' device."""

    def __init__(self, xp, dev, lengths, ends, steps):
        put = (lambda a: a) if xp is np else (lambda a: xp.asarray(a, device=dev))
        self.last, self.first = put(ends - 1), put(ends - lengths)
        self.steps = [(put(idx), put(idx - 1)) for idx in steps]
        self.lengths = put(lengths.astype(np.float64))


def _to_numpy(a) -> np.ndarray:
    """A host numpy copy of an array-API array (a CUDA tensor, say); numpy arrays as they are."""
    if a is None or isinstance(a, np.ndarray):
        return a
    return np.asarray(a.cpu() if hasattr(a, "cpu") else a)


def merge_statistics(parts) -> dict:
    """The statistics of consecutive shards of texts, merged in shard order.

    Each part is what :func:`~sklearn_ntps.embedding.extract_statistics` (or
    :meth:`MomentAccumulator.statistics`) returns for one shard. The pooled
    features are concatenated along the text axis; ``c0``, ``c1``, ``first``,
    ``n_pairs`` and ``n_truncated`` are summed in float64, so the result equals
    the statistics of all the texts at once up to float64 rounding.

    Parameters
    ----------
    parts : sequence of dict
        The shards' statistics, in the order of their texts.

    Returns
    -------
    dict
        The same keys as the parts.

    Raises
    ------
    ValueError
        If there is no part, or the parts disagree on the kept layers, the
        number of features, the statistics held or the truncation limit.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.moments import MomentAccumulator, merge_statistics
    >>> states = np.arange(24, dtype=np.float32).reshape(2, 6, 2)  # 2 layers, 6 tokens
    >>> def stats(lo, hi, lengths):
    ...     acc = MomentAccumulator()
    ...     acc.update(states[:, lo:hi], lengths)
    ...     return acc.statistics()
    >>> merged = merge_statistics([stats(0, 4, [4]), stats(4, 6, [2])])
    >>> bool(np.array_equal(merged["c0"], stats(0, 6, [4, 2])["c0"]))
    True
    >>> merged["pooled_mean"].shape, merged["n_pairs"]
    ((2, 2, 2), 4)
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_statistics needs at least one part, got none.")
    head = parts[0]
    pooled = sorted(k for k in head if k.startswith("pooled_"))
    summed = [k for k in ("c0", "c1", "first") if head.get(k) is not None]
    if not pooled:
        raise ValueError("Part 0 holds no pooled features: not a statistics dict.")
    for i, part in enumerate(parts[1:], 1):
        found = sorted(k for k in part if k.startswith("pooled_")), \
            [k for k in ("c0", "c1", "first") if part.get(k) is not None]
        if found != (pooled, summed):
            raise ValueError(f"Part {i} holds {found[0] + found[1]}, part 0 holds "
                             f"{pooled + summed}: shards must be extracted alike.")
        for name, get in (("layers", _layer_list), ("truncation_limit", dict.get)):
            if get(part, name) != get(head, name):
                raise ValueError(f"Part {i} has {name}={get(part, name)!r}, part 0 has "
                                 f"{name}={get(head, name)!r}: shards must be extracted alike.")
        shape, expected = np.shape(part[pooled[0]]), np.shape(head[pooled[0]])
        if (shape[0], shape[-1]) != (expected[0], expected[-1]):
            raise ValueError(f"Part {i} has {shape[0]} layers of {shape[-1]} features, part 0 "
                             f"has {expected[0]} of {expected[-1]}.")
    out = {k: np.concatenate([p[k] for p in parts], axis=1) for k in pooled}
    for k in summed:
        # In shard order, in float64: the same sums as one pass, up to rounding.
        total = np.array(head[k], dtype=np.float64)
        for part in parts[1:]:
            total += part[k]
        out[k] = total
    if summed:
        out["n_pairs"] = sum(int(p["n_pairs"]) for p in parts)
    out["precision"] = max(float(p["precision"]) for p in parts)
    for name in ("layers", "truncation_limit"):
        if name in head:
            out[name] = head[name]
    if "n_truncated" in head:
        out["n_truncated"] = sum(int(p.get("n_truncated") or 0) for p in parts)
    return out


def _layer_list(stats, name):
    layers = stats.get(name)
    return None if layers is None else [int(i) for i in layers]


def unit_roundoff(dtype, xp=np) -> float:
    """Relative precision of hidden states stored as ``dtype``, never finer than float32's.

    ``xp`` is the array namespace ``dtype`` belongs to (torch's for a tensor's dtype).
    """
    if xp is np:
        dtype = np.dtype(dtype)
    own = float(xp.finfo(dtype).eps) / 2 if xp.isdtype(dtype, "real floating") else 0.0
    return max(own, _FLOAT32_ROUNDOFF)


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
    out, largest = [], 0.0
    for i, x in enumerate(X):
        if np.iscomplexobj(x):
            raise ValueError(f"Text {i} is complex; hidden states must be real.")
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
        peak = np.abs(a).max(initial=0.0)
        if peak > _MAX_STATE:
            raise ValueError(
                f"Text {i} has hidden states as large as {peak:.3g}, beyond float32's "
                f"range ({_MAX_STATE:.3g}): their float64 moments would overflow. Rescale the "
                "states (NTPS does not depend on a global scale)."
            )
        largest = max(largest, peak)
        out.append(a)
    if out[0].shape[1] == 0:
        raise ValueError("Hidden states have 0 features.")
    if 0 < largest < _MIN_STATE:
        raise ValueError(
            f"Hidden states are at most {largest:.3g} in magnitude, below float32's smallest "
            f"normal number ({_MIN_STATE:.3g}): their float64 squares underflow. Rescale the "
            "states (NTPS does not depend on a global scale)."
        )
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
    precision = _input_precision(X)
    states = check_token_states(X)
    acc = MomentAccumulator(pooling=pooling, precision=precision)
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


def _input_precision(X) -> float:
    # Read before the float64 copy: a float16 array's precision is float16's.
    arrays = [X] if isinstance(X, np.ndarray) else X if isinstance(X, (list, tuple)) else []
    return max((unit_roundoff(x.dtype) for x in arrays if isinstance(x, np.ndarray)),
               default=_FLOAT32_ROUNDOFF)


def _pool(states, lengths, pooling):
    """The pooling rule for packed numpy states of shape (n_tokens, n_features)."""
    ends = np.cumsum(lengths)
    if pooling == "last":
        return states[ends - 1]
    return np.add.reduceat(states, ends - lengths, axis=0) / lengths[:, None]
