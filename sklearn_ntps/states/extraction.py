"""Stage 1 of the data flow: run a model over texts (text -> hidden states -> statistics).

Plain functions, for every caller that runs a model: the estimator
(:class:`~sklearn_ntps.HFEmbeddingTransformer`), LoRA
(:class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier`) and Dask's workers
(:mod:`sklearn_ntps.states.distributed`). Each decides one thing once: how texts are
checked and tokenised, the order of their batches (longest first) and the way
back to input order, how a batch is padded, and how one batch's states are
pooled (by :func:`sklearn_ntps.states.moments.pool`, the rule for everyone).

torch is imported inside the functions that need it, so importing this
module stays light.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import replace

import numpy as np
from tqdm.auto import tqdm

from .._sklearn_compat import array_namespace
from .._warnings import warn_at_caller
from .moments import MomentAccumulator, TokenIndex, pool
from .statistics import POOLINGS, Statistics

__all__ = ["check_texts", "encode", "extract_statistics", "in_input_order", "length_order",
           "padded_batch", "pooled_batch", "resolve_layer", "shuffled_batches", "split_batches",
           "warn_truncated"]

_STATS_BUFFER_BYTES = 128 << 20  # float32 token states waiting for the moment products
# Training texts are sorted by length within pools of this many batches: enough to cut the
# padding, few enough that a pool's batches change from one pass over the texts to the next.
_BUCKET_BATCHES = 4


def check_texts(X) -> list[str]:
    """Validate a sequence of non-empty strings; raise a ValueError naming the culprit.

    Examples
    --------
    >>> from sklearn_ntps.states.extraction import check_texts
    >>> check_texts(("one text", "another"))
    ['one text', 'another']
    >>> check_texts(["fine", " "])
    Traceback (most recent call last):
    ...
    ValueError: Text 1 is empty or whitespace only; drop it before embedding.
    """
    if isinstance(X, (str, bytes)):
        raise ValueError("X must be a sequence of texts, not a single string: wrap it in a list.")
    try:
        texts = list(X)
    except TypeError:
        raise ValueError(f"X must be a sequence of str, got {type(X).__name__}.") from None
    if not texts:
        raise ValueError("X is empty: pass at least one text.")
    for i, text in enumerate(texts):
        if text is None:
            raise ValueError(f"Text {i} is None; drop it or replace it with a string.")
        if not isinstance(text, str):
            raise ValueError(
                f"Text {i} is a {type(text).__name__}, not a str; convert it with str() first."
            )
        if not text.strip():
            raise ValueError(f"Text {i} is empty or whitespace only; drop it before embedding.")
    return texts


def resolve_layer(layer, n_layers: int, name) -> int:
    """``layer`` as a non-negative hidden-state index, or a ValueError saying the range.

    Examples
    --------
    >>> from sklearn_ntps.states.extraction import resolve_layer
    >>> resolve_layer(-1, 31, "SmolLM2-135M")
    30
    """
    if not -n_layers <= layer < n_layers:
        raise ValueError(
            f"layer={layer} is out of range: {name!r} has {n_layers} hidden states "
            f"(0 = embeddings .. {n_layers - 1}; negative values count from the end)."
        )
    return int(layer) % n_layers


def encode(loaded, texts, max_length):
    """Token ids of ``texts``, cut at ``max_length`` and at the model's positions.

    Returns ``(ids, limit, n_truncated)``: the ids of each text, the cut
    actually used, and how many texts it shortened.
    """
    tok, config = loaded.tokenizer, loaded.model.config
    limit = min(max_length, getattr(config, "max_position_embeddings", None) or max_length)
    ids = tok(texts, truncation=True, max_length=limit)["input_ids"]
    return ids, limit, _count_truncated(tok, texts, ids, limit)


def warn_truncated(n_truncated: int, n_texts: int, limit: int) -> None:
    """Say, at the user's line, how many texts the cut at ``limit`` tokens shortened."""
    if n_truncated:
        warn_at_caller(f"{n_truncated} of {n_texts} texts were truncated to max_length={limit} "
                       "tokens.")


def _count_truncated(tok, texts, encoded, limit):
    # Only a text that fills max_length can have been cut; re-tokenize those alone.
    full = [i for i, ids in enumerate(encoded) if len(ids) >= limit]
    if not full:
        return 0
    lengths = tok([texts[i] for i in full], truncation=False, verbose=False)["input_ids"]
    return sum(len(ids) > limit for ids in lengths)


def length_order(lengths) -> np.ndarray:
    """The texts' indices, longest first (ties in input order).

    Similar lengths share a batch (little padding), and the largest batch
    comes first, so running out of memory shows at once. Dask's shards follow
    this order too, so that their batches are those of one process.

    Examples
    --------
    >>> from sklearn_ntps.states.extraction import length_order
    >>> length_order([3, 9, 4, 9]).tolist()
    [1, 3, 2, 0]
    """
    return np.argsort(-np.asarray(lengths), kind="stable")


def split_batches(order, batch_size: int) -> list[np.ndarray]:
    """``order`` cut into consecutive batches of ``batch_size`` (the last may be shorter).

    Examples
    --------
    >>> from sklearn_ntps.states.extraction import length_order, split_batches
    >>> [b.tolist() for b in split_batches(length_order([3, 9, 4, 9, 1]), 2)]
    [[1, 3], [2, 0], [4]]
    """
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def in_input_order(order) -> np.ndarray:
    """The index that puts rows computed in ``order`` (a permutation) back in input order.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps.states.extraction import in_input_order
    >>> order = np.array([2, 0, 1])
    >>> np.array(["c", "a", "b"])[in_input_order(order)].tolist()
    ['a', 'b', 'c']
    """
    inverse = np.empty(len(order), dtype=np.intp)
    inverse[order] = np.arange(len(order))
    return inverse


def shuffled_batches(indices, lengths, batch_size, generator):
    """One training epoch's batches: shuffled, sorted by length within pools, in shuffled order.

    Texts of similar lengths share a batch (little padding) while every epoch
    still sees the texts, and the batches, in a new random order. A pool holds
    4 batches, fewer when that would be more than half the texts (one batch at
    least): a pool of every text would cut the same batches at every epoch.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ntps.states.extraction import shuffled_batches
    >>> g = torch.Generator().manual_seed(0)
    >>> epochs = [shuffled_batches(np.arange(8), np.arange(8), 2, g) for _ in range(2)]
    >>> sorted(np.concatenate(epochs[0]).tolist())
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> [len(b) for b in epochs[0]]
    [2, 2, 2, 2]
    """
    import torch

    perm = indices[torch.randperm(len(indices), generator=generator).numpy()]
    size = batch_size * max(1, min(_BUCKET_BATCHES, len(perm) // (2 * batch_size)))
    batches = []
    for start in range(0, len(perm), size):
        chunk = perm[start : start + size]
        batches += split_batches(chunk[np.argsort(lengths[chunk], kind="stable")], batch_size)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def padded_batch(loaded, ids):
    """One batch of token ids, padded, as tensors on the model's device.

    Models number positions 0..T-1 whatever the mask; position ids counted
    from the attention mask instead make left padding give the states right
    padding does.
    """
    batch = loaded.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    batch = {k: v.to(loaded.device) for k, v in batch.items()}
    if "position_ids" in inspect.signature(loaded.model.forward).parameters:
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


def pooled_batch(loaded, ids, layer: int, pooling: str, *, model=None):
    """Pooled float32 hidden states at ``layer`` of one batch of token ids, padding excluded.

    ``model`` (default: ``loaded.model``) may be another module on the same
    weights, such as a peft model being trained: the autograd graph is kept.
    """
    batch = padded_batch(loaded, ids)
    mask = batch["attention_mask"]
    hidden = (model or loaded.model)(**batch, output_hidden_states=True).hidden_states[layer]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    # torch sums the padded batch faster than the packed tokens would be summed one
    # position at a time; the rule itself, and which token is last, is pool's.
    index = TokenIndex(mask.sum(-1).cpu().numpy(), array_namespace(hidden), hidden.device)
    return pool(hidden[mask.bool()], index, pooling, sums=(hidden * weights).sum(1)).float()


class _Stop(Exception):
    """Raised inside the forward pass once the deepest state wanted is in hand."""


def transformer_blocks(model):
    """The model's stack of transformer blocks: the ``ModuleList`` the hidden states run through.

    The longest ``torch.nn.ModuleList`` among the model's modules whose length is
    ``config.num_hidden_layers`` (``model.layers`` of Llama, ``encoder.layer`` of
    BERT, ``h`` of GPT-2); None when there is no such list.
    """
    import torch

    n_blocks = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)
             and len(m) == n_blocks]
    return lists[0] if len(lists) == 1 else None


@contextlib.contextmanager
def states_through(model, last):
    """Run the model only as far as hidden state ``last``: later blocks are never called.

    Hidden state ``i < n_blocks`` is the input of block ``i`` (state 0 the
    embeddings' output), so a pre-hook on blocks ``0 .. last`` takes each
    state as it arrives, exactly the tensor the full pass would return, and the
    hook on block ``last`` stops the pass. Yields the list the states fill, in
    order; ``model(...)`` raises :class:`_Stop`, which the caller catches. The
    last state of all (after the final norm, in most decoders) needs the whole
    pass: ``last`` must be below the number of blocks.
    """
    blocks = transformer_blocks(model)
    if blocks is None or not 0 <= last < len(blocks):
        raise ValueError(f"Cannot stop the forward pass at hidden state {last}.")
    states, handles = [], []

    def take(index):
        def hook(module, args, kwargs):
            states.append(args[0] if args else kwargs["hidden_states"])
            if index == last:
                raise _Stop
        return hook

    try:
        for i in range(last + 1):
            handles.append(blocks[i].register_forward_pre_hook(take(i), with_kwargs=True))
        yield states
    finally:
        for h in handles:
            h.remove()


def _hidden_states(model, batch, kept):
    """The hidden states of ``kept`` for one batch, the pass stopped after the deepest one.

    The whole pass where the deepest kept state is the last one, or where the
    model's blocks cannot be found.
    """
    deepest = max(kept)
    blocks = transformer_blocks(model)
    if blocks is None or deepest >= len(blocks):
        return model(**batch, output_hidden_states=True).hidden_states
    with states_through(model, deepest) as states:
        try:
            model(**batch)
        except _Stop:
            pass
    return states


def extract_statistics(loaded, texts, *, layers=None, batch_size=16, max_length=512,
                       with_moments=True, progress=True, sort_by_length=True,
                       on_device=None) -> Statistics:
    """Run the model once over ``texts`` and return the statistics of ``layers`` (None: all).

    Texts are tokenized once, sorted by length into batches (little padding),
    and restored to input order at the end. ``on_device`` (default: on a CUDA
    model) keeps the hidden states on the model's device and sums the moments
    there, in float64, so only the d x d results cross to the host; otherwise
    they are summed in numpy, whose ``c.T @ c`` is a symmetric rank-k update.

    Parameters
    ----------
    loaded : LoadedModel
        What :func:`~sklearn_ntps.states.models.load_model` returns.
    texts : list of str
    layers : list of int, default=None
        The hidden states to keep, as non-negative indices; None keeps all.
    batch_size, max_length : int, default=16, 512
    with_moments : bool, default=True
        Accumulate the moments; False keeps the pooled features only.
    progress : bool, default=True
    sort_by_length : bool, default=True
        Batch the texts longest first; False batches them in input order.
    on_device : bool, default=None

    Returns
    -------
    Statistics
        Both poolings' features, with ``with_moments`` the moments, the
        ``layers`` kept, the ``truncation_limit`` in tokens and ``n_truncated``.

    Examples
    --------
    >>> from sklearn_ntps.states.extraction import extract_statistics
    >>> from sklearn_ntps.states.models import load_model
    >>> stats = extract_statistics(load_model("all-MiniLM-L6-v2", progress=False),
    ...                            ["A short text.", "Another, longer one."], layers=[3],
    ...                            progress=False)
    >>> stats.layers, stats.n_texts, stats.layer(3).c0.shape
    ((3,), 2, (384, 384))
    """
    import torch

    model = loaded.model
    encoded, limit, n_truncated = encode(loaded, texts, max_length)
    kept = list(range(loaded.n_layers)) if layers is None else list(layers)
    lengths = np.array([len(ids) for ids in encoded])
    order = length_order(lengths) if sort_by_length else np.arange(len(texts))
    # States arrive upcast to float32: their precision is the model's dtype's.
    acc = MomentAccumulator(pooling=POOLINGS, autoregressive=with_moments,
                            precision=float(torch.finfo(model.dtype).eps) / 2)
    if on_device is None:
        on_device = model.device.type == "cuda"
    host = (lambda t: t) if on_device else (lambda t: t.cpu().numpy())
    # Pooled features alone need no products to batch, and gathering the batches cost more
    # than pooling them (2.3 of 24.7 s at 1,200 texts of SmolLM2): each batch goes at once.
    pending = _Pending(acc, _STATS_BUFFER_BYTES if with_moments else 0)
    with torch.inference_mode():
        for idx in tqdm(split_batches(order, batch_size), desc="Embedding", unit="batch",
                        disable=not progress, delay=2):
            batch = padded_batch(loaded, [encoded[i] for i in idx])
            mask = batch["attention_mask"].bool()
            hidden = _hidden_states(model, batch, kept)
            # (n_layers, n_valid_tokens, d), text after text: pads dropped
            # whichever side they are on.
            pending.add(host(torch.stack([hidden[i] for i in kept])[:, mask].float()),
                        mask.sum(dim=1).cpu().numpy())
        pending.flush()
    return replace(acc.statistics(rows=order), layers=kept,
                   truncation_limit=limit, n_truncated=n_truncated)


class _Pending:
    """Gathers batches' packed states until the moment products are worth a BLAS call.

    A short-text batch holds a few hundred tokens, on which float64 GEMMs run
    at half speed; the buffer is capped in bytes, not tokens, so a wide or deep
    model does not hold gigabytes. (Running the products in a worker thread
    while the model computes the next batches was measured slower on 2 cores,
    1.48x the bare forward pass against 1.26x, and was taken out.)
    """

    def __init__(self, acc, max_bytes):
        self.acc, self.max_bytes = acc, max_bytes
        self.states, self.lengths = [], []

    def add(self, states, lengths):
        self.states.append(states)
        self.lengths.append(lengths)
        if sum(s.nbytes for s in self.states) >= self.max_bytes:
            self.flush()

    def flush(self):
        if self.states:
            states = self.states[0] if len(self.states) == 1 else \
                array_namespace(self.states[0]).concat(self.states, axis=1)
            self.acc.update(states, np.concatenate(self.lengths))
            self.states, self.lengths = [], []
