"""The typed statistics NTPS needs, and the one way they add up.

:class:`Moments` holds one layer's sufficient statistics over a set of texts
(what the scorers take); :class:`Statistics` holds every kept layer's, as one
pass of a model gives them. Both add up shard by shard, through one merge,
:meth:`Statistics.concat`: in one process, from the statistics store, from Dask
workers, in a bootstrap of blocks. Import them from :mod:`sklearn_ntps.states.moments`
(or the package), which streams hidden states into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

POOLINGS = ("mean", "last")
# Neural networks compute in float32 at best: float64 arrays are taken as upcast float32.
FLOAT32_ROUNDOFF = float(np.finfo(np.float32).eps) / 2
_SUMS = ("c0", "c1", "context_sum", "target_sum")


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
    >>> from sklearn_ntps.states.moments import compute_moments
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
    precision: float = FLOAT32_ROUNDOFF

    def __len__(self) -> int:
        return self.pooled.shape[0]

    @property
    def n_features(self) -> int:
        """The dimension of the hidden states: the columns of ``pooled``."""
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
        >>> from sklearn_ntps.states.moments import compute_moments
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
        first_order = {"context_sum": self.context_sum * s, "target_sum": self.target_sum * s} \
            if self.has_first_order else {}
        return Moments(pooled=self.pooled * s, c0=self.c0 * outer, c1=self.c1 * outer,
                       n_pairs=self.n_pairs, precision=self.precision, **first_order)

    def __add__(self, other: Moments) -> Moments:
        if not isinstance(other, Moments):
            return NotImplemented
        return resample_blocks([self, other], [1, 1])

    def __radd__(self, other):
        # sum() of a stream of batches' moments starts from 0.
        return self if isinstance(other, int) and other == 0 else NotImplemented


@dataclass(frozen=True, eq=False)
class Statistics:
    """Every kept layer's NTPS statistics of a set of texts, in the texts' order.

    What one pass of a model gives
    (:func:`~sklearn_ntps.states.extraction.extract_statistics`,
    :meth:`~sklearn_ntps.states.moments.MomentAccumulator.statistics`): the pooled
    features under each pooling and, with the moments, each layer's sums of :class:`Moments`.
    Shards of texts add up with ``+`` (the texts of the right after those of
    the left) or :meth:`concat`; :meth:`layer` gives one layer's
    :class:`Moments`; :meth:`to_arrays` and :meth:`from_arrays` are the
    format of the statistics store on disk (:mod:`sklearn_ntps.states.cache`).

    Parameters
    ----------
    pooled : dict of str to ndarray of shape (n_layers, n_texts, n_features)
        Each pooling's features ("mean", "last").
    precision : float, default=2**-24
        Unit roundoff of the dtype the states were computed in.
    c0, c1 : ndarray of shape (n_layers, n_features, n_features), default=None
        Each layer's autoregressive sums; None when only pooled features were kept.
    context_sum, target_sum : ndarray of shape (n_layers, n_features), default=None
        Each layer's first-order sums, over the same pairs.
    n_pairs : int, default=0
        (Context, next token) pairs summed, the same in every layer.
    layers : sequence of int, default=None
        The hidden states held, as non-negative indices; None: all of them,
        ``0 .. n_layers - 1``. Stored as a tuple.
    truncation_limit : int, default=None
        The token count the texts were cut at, when a model ran over them.
    n_truncated : int, default=0
        How many texts that cut shortened.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.states.moments import MomentAccumulator
    >>> states = np.arange(24, dtype=np.float32).reshape(2, 6, 2)  # 2 layers, 6 tokens
    >>> def stats(lo, hi, lengths):
    ...     acc = MomentAccumulator()
    ...     acc.update(states[:, lo:hi], lengths)
    ...     return acc.statistics()
    >>> both = stats(0, 4, [4]) + stats(4, 6, [2])
    >>> bool(np.array_equal(both.c0, stats(0, 6, [4, 2]).c0))
    True
    >>> both.pooled["mean"].shape, both.n_pairs, both.layers
    ((2, 2, 2), 4, (0, 1))
    >>> both.layer(-1).pooled
    array([[15., 16.],
           [21., 22.]])
    """

    pooled: dict
    precision: float = FLOAT32_ROUNDOFF
    c0: np.ndarray | None = None
    c1: np.ndarray | None = None
    context_sum: np.ndarray | None = None
    target_sum: np.ndarray | None = None
    n_pairs: int = 0
    layers: tuple | None = None
    truncation_limit: int | None = None
    n_truncated: int = 0

    def __post_init__(self):
        if not self.pooled:
            raise ValueError("Statistics need the pooled features of at least one pooling.")
        layers = range(self.n_layers) if self.layers is None else self.layers
        object.__setattr__(self, "layers", tuple(int(i) for i in layers))

    def __len__(self) -> int:
        return self.n_texts

    @property
    def n_layers(self) -> int:
        """How many layers are held: the first axis of the pooled features."""
        return next(iter(self.pooled.values())).shape[0]

    @property
    def n_texts(self) -> int:
        """How many texts the statistics sum over: the second axis of the pooled features."""
        return next(iter(self.pooled.values())).shape[1]

    @property
    def n_features(self) -> int:
        """The dimension of the hidden states: the last axis of the pooled features."""
        return next(iter(self.pooled.values())).shape[2]

    @property
    def has_moments(self) -> bool:
        """Whether the autoregressive sums are here, not only the pooled features."""
        return self.c0 is not None

    @property
    def has_first_order(self) -> bool:
        """Whether the first-order sums that centring needs are here."""
        return self.context_sum is not None and self.target_sum is not None

    def features(self, layer: int, pooling: str = "mean") -> np.ndarray:
        """One layer's pooled features, shape (n_texts, n_features): see :meth:`layer`."""
        # np.array copies a memory-mapped slice of the store into a plain array.
        return np.array(self.pooled[pooling][self._position(layer)])

    def layer(self, layer: int, pooling: str = "mean") -> Moments:
        """One layer's :class:`Moments`, its pooled features those of ``pooling``.

        ``layer`` is a hidden-state index among :attr:`layers`; a negative one
        counts from the end of them.
        """
        if not self.has_moments:
            raise ValueError("These statistics hold pooled features only, no moments.")
        i = self._position(layer)
        first_order = {"context_sum": np.array(self.context_sum[i]),
                       "target_sum": np.array(self.target_sum[i])} if self.has_first_order else {}
        return Moments(pooled=self.features(layer, pooling), c0=np.array(self.c0[i]),
                       c1=np.array(self.c1[i]), n_pairs=int(self.n_pairs),
                       precision=float(self.precision), **first_order)

    def _position(self, layer):
        if -len(self.layers) <= layer < 0:
            return len(self.layers) + layer
        if layer in self.layers:
            return self.layers.index(layer)
        raise ValueError(f"Layer {layer} is not among the layers held, {list(self.layers)}.")

    def reordered(self, index) -> Statistics:
        """The same texts in the order ``index`` (a permutation) gives.

        The pooled rows move; the sums over all texts stay.
        """
        return replace(self, pooled={p: v[:, index] for p, v in self.pooled.items()})

    def __add__(self, other: Statistics) -> Statistics:
        if not isinstance(other, Statistics):
            return NotImplemented
        return Statistics.concat([self, other])

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else NotImplemented

    @classmethod
    def concat(cls, parts, counts=None) -> Statistics:
        """The statistics of consecutive shards of texts, one after the other.

        The one way statistics add up (``+`` on :class:`Statistics` and on
        :class:`Moments`, Dask's shards, a bootstrap of blocks): the pooled
        rows are concatenated along the text axis, the sums added in float64
        in shard order, so the result equals the statistics of all the texts
        at once up to float64 rounding.

        Parameters
        ----------
        parts : sequence of Statistics
            The shards, in the order of their texts, extracted alike (the same
            layers, features, poolings, truncation limit, and all with or all
            without the moments).
        counts : array-like of int, default=None
            How many times each part is taken, one after the other (None:
            once each), as a bootstrap of blocks of texts draws them.

        Returns
        -------
        Statistics

        Raises
        ------
        ValueError
            If there is no part, or the parts were not extracted alike.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("Statistics.concat needs at least one part, got none.")
        counts = np.ones(len(parts), np.intp) if counts is None else \
            np.asarray(counts, dtype=np.intp)
        if len(parts) != len(counts) or (counts < 0).any() or counts.sum() == 0:
            raise ValueError("counts must be one non-negative count per block, not all zero.")
        for i, part in enumerate(parts[1:], 1):
            parts[0]._check_alike(part, i)
        taken = [(p, int(c)) for p, c in zip(parts, counts) if c]

        def summed(name):
            # In shard order, in float64: the same sums as one pass, up to rounding.
            values = [(getattr(p, name), c) for p, c in taken]
            if any(v is None for v, _ in values):
                return None
            total = np.array(values[0][0] * values[0][1], dtype=np.float64)
            for v, c in values[1:]:
                total += v if c == 1 else c * v
            return total

        head = parts[0]
        return cls(
            pooled={p: np.concatenate([v.pooled[p] if c == 1 else np.tile(v.pooled[p], (1, c, 1))
                                       for v, c in taken], axis=1) for p in head.pooled},
            precision=max(float(p.precision) for p, _ in taken),
            **{name: summed(name) for name in _SUMS},
            n_pairs=sum(c * int(p.n_pairs) for p, c in taken), layers=head.layers,
            truncation_limit=head.truncation_limit,
            n_truncated=sum(c * int(p.n_truncated) for p, c in taken),
        )

    def _check_alike(self, other, i):
        def held(s):
            return f"pooled {'/'.join(sorted(s.pooled))}" + (" and moments" if s.has_moments
                                                             else " only")

        if held(other) != held(self):
            raise ValueError(f"Part {i} holds {held(other)}, part 0 holds {held(self)}: shards "
                             "must be extracted alike.")
        for name in ("layers", "truncation_limit"):
            theirs, ours = getattr(other, name), getattr(self, name)
            if theirs != ours:
                show = (lambda v: list(v)) if name == "layers" else (lambda v: v)
                raise ValueError(f"Part {i} has {name}={show(theirs)!r}, part 0 has "
                                 f"{name}={show(ours)!r}: shards must be extracted alike.")
        if other.n_features != self.n_features:
            raise ValueError(f"Part {i} has {other.n_features} features, part 0 has "
                             f"{self.n_features}: shards must be extracted alike.")

    def to_arrays(self) -> dict:
        """The arrays and scalars the statistics store keeps, one ``.npy`` file per array.

        ``pooled_<pooling>``; with the moments ``c0``, ``c1``, ``n_pairs`` and
        ``first``, the first-order sums as (n_layers, 2, n_features), context
        then target (the layout the store's entries have had since its version 4);
        ``precision``, ``layers``, ``truncation_limit`` and ``n_truncated``.
        """
        out = {f"pooled_{p}": v for p, v in self.pooled.items()}
        if self.has_moments:
            out.update(c0=self.c0, c1=self.c1, n_pairs=int(self.n_pairs))
            if self.has_first_order:
                out["first"] = np.stack([self.context_sum, self.target_sum], axis=1)
        out.update(precision=float(self.precision), layers=list(self.layers),
                   truncation_limit=self.truncation_limit, n_truncated=int(self.n_truncated))
        return out

    @classmethod
    def from_arrays(cls, arrays) -> Statistics:
        """The statistics :meth:`to_arrays` gave, or an entry of the store holds.

        Memory maps stay memory maps until :meth:`layer` copies one layer out.
        """
        first = arrays.get("first")
        return cls(
            pooled={k.removeprefix("pooled_"): v for k, v in arrays.items()
                    if k.startswith("pooled_")},
            precision=float(arrays["precision"]), c0=arrays.get("c0"), c1=arrays.get("c1"),
            context_sum=None if first is None else first[:, 0],
            target_sum=None if first is None else first[:, 1],
            n_pairs=int(arrays.get("n_pairs", 0)), layers=arrays.get("layers"),
            truncation_limit=arrays.get("truncation_limit"),
            n_truncated=int(arrays.get("n_truncated") or 0),
        )


def resample_blocks(parts: Sequence[Moments], counts) -> Moments:
    """The moments of blocks of texts drawn with replacement: block g taken ``counts[g]`` times.

    The autoregressive sums are not kept per text, so a bootstrap of the
    texts resamples whole blocks; the pooled rows of block g are repeated
    ``counts[g]`` times, block after block, as the labels must be.
    """
    return Statistics.concat([_one_layer(p) for p in parts], counts).layer(0)


def _one_layer(m: Moments) -> Statistics:
    # Its rows go under the first pooling's name, whichever pooling they are: sums do not care.
    sums = {name: None if getattr(m, name) is None else getattr(m, name)[None] for name in _SUMS}
    return Statistics(pooled={POOLINGS[0]: m.pooled[None]}, precision=m.precision,
                      n_pairs=m.n_pairs, **sums)
