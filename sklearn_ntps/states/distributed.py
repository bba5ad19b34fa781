"""Sharding on Dask: plan shards of texts, run them on workers, merge their statistics.

Each worker process loads a model once (the loaded-model memo of
:func:`~sklearn_ntps.states.models.load_model` keeps it) and runs
:func:`~sklearn_ntps.states.extraction.extract_statistics` over its shard; the client
merges the shards with :meth:`~sklearn_ntps.states.statistics.Statistics.concat`.

Shards are runs of the texts sorted by token length, cut at batch boundaries:
every batch holds the very texts it holds in one process, so the pooled
features are bit-identical and the moments equal up to float64 rounding (the
same sums, grouped differently). ``dask.distributed`` is optional:
``pip install 'sklearn-ntps[dask]'``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._utils import optional_import
from .extraction import (
    encode,
    extract_statistics,
    in_input_order,
    length_order,
    split_batches,
)
from .models import load_model
from .statistics import Statistics

__all__ = ["describe_model", "get_client", "local_cluster", "plan_shards",
           "sharded_statistics"]

# One Client per scheduler address for the life of the process: connecting costs
# a round trip and a thread, and a grid search extracts many times.
_CLIENTS: dict = {}


def _distributed():
    return optional_import("distributed", "dask", "Sharding on Dask")


def get_client(scheduler):
    """A ``distributed.Client`` for ``scheduler``, an address or a Client (returned as is).

    Clients opened here are kept, one per address, and never made the default
    client, so a Client of your own keeps its role.
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError("scheduler must be an address such as 'tcp://127.0.0.1:8786' or a "
                         f"distributed.Client, got {scheduler!r}.")
    client = _CLIENTS.get(scheduler)
    if client is None or client.status in ("closing", "closed"):
        client = _CLIENTS[scheduler] = distributed.Client(scheduler, set_as_default=False)
    return client


@contextlib.contextmanager
def local_cluster(n_workers, **kwargs):
    """Start a ``LocalCluster`` of ``n_workers`` one-thread worker processes; yield its address.

    The cluster and the client :func:`get_client` opened on it close on exit.
    ``kwargs`` go to ``distributed.LocalCluster``.
    """
    distributed = _distributed()
    if not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}.")
    # ":0": the scheduler's web server takes a free port, so two clusters can coexist.
    kwargs = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0", **kwargs}
    with distributed.LocalCluster(n_workers=int(n_workers), **kwargs) as cluster:
        address = cluster.scheduler_address
        try:
            yield address
        finally:
            client = _CLIENTS.pop(address, None)
            if client is not None:
                client.close()


def plan_shards(lengths, n_shards, batch_size):
    """Cut texts into at most ``n_shards`` shards of about equal cost, at batch boundaries.

    The texts are sorted by decreasing token length, stably, as
    :func:`~sklearn_ntps.states.extraction.extract_statistics` sorts them
    (:func:`~sklearn_ntps.states.extraction.length_order`), and each shard is a run of
    whole batches of that order: the batches are those of a single process. A
    batch costs its padded tokens (its size times its longest text).

    Returns
    -------
    list of ndarray of int
        The indices of each shard's texts, longest first; shard after shard
        they list the sorted order.

    Examples
    --------
    >>> from sklearn_ntps.states.distributed import plan_shards
    >>> [s.tolist() for s in plan_shards([3, 9, 4, 9, 1, 2], n_shards=2, batch_size=2)]
    [[1, 3], [2, 0, 5, 4]]
    """
    lengths = np.asarray(lengths)
    batches = split_batches(length_order(lengths), batch_size)
    cost = np.cumsum([lengths[batch[0]] * len(batch) for batch in batches])
    n = max(1, min(int(n_shards), len(batches)))
    # A shard ends with the batch that brings the running cost to k/n of the total.
    ends = np.searchsorted(cost, cost[-1] * np.arange(1, n) / n) + 1
    bounds = np.unique(np.r_[0, ends, len(batches)])
    return [np.concatenate(batches[lo:hi]) for lo, hi in itertools.pairwise(bounds)]


def describe_model(model_name_or_path, *, scheduler, device="auto", torch_dtype="auto",
                   trust_remote_code=False, retries=2):
    """Load a model on a worker and return what a fit needs to know about it.

    Returns
    -------
    dict
        ``n_layers``, ``hidden_size``, ``fingerprint`` (of the worker's files)
        and ``dtype``, as :class:`~sklearn_ntps.HFEmbeddingTransformer` stores them.
    """
    client = get_client(scheduler)
    load = {"device": device, "torch_dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    future = client.submit(_describe, _portable(model_name_or_path), load, pure=False,
                           retries=retries)
    return future.result()


def sharded_statistics(model_name_or_path, texts, *, scheduler, n_shards=None, layers=None,
                       batch_size=16, max_length=512, with_moments=True, device="auto",
                       torch_dtype="auto", trust_remote_code=False, retries=2, progress=True):
    """:func:`~sklearn_ntps.states.extraction.extract_statistics` of ``texts``, sharded on Dask.

    One task counts the texts' tokens; then one task per shard (see
    :func:`plan_shards`) runs the model over its texts on a worker, and the
    client merges the shards in order. A task whose worker dies is run again
    elsewhere (Dask's ``allowed-failures``); one that raises is retried
    ``retries`` times.

    Parameters
    ----------
    model_name_or_path : str or path-like
        As for :func:`~sklearn_ntps.states.models.load_model`, as the workers see it; a
        path that exists here is sent as an absolute path.
    texts : sequence of str
    scheduler : str or distributed.Client
        The scheduler's address (``"tcp://host:8786"``) or a Client.
    n_shards : int, default=None
        None: one per worker thread (one per GPU with GPU workers of one thread).
        More balance uneven workers and make a lost task cheaper to redo; each
        shard sends ``2 L d^2`` float64 numbers back.
    layers, batch_size, max_length, with_moments
        As for :func:`~sklearn_ntps.states.extraction.extract_statistics`.
    device, torch_dtype, trust_remote_code
        How each worker loads the model (``"auto"`` is decided on the worker).
    retries : int, default=2
    progress : bool, default=True
        A progress bar over the finished shards.

    Returns
    -------
    Statistics
        What ``extract_statistics`` returns for all the texts, in input order.
    """
    distributed = _distributed()
    client = get_client(scheduler)
    texts = list(texts)
    source = _portable(model_name_or_path)
    load = {"device": device, "torch_dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    lengths = client.submit(_describe, source, load, texts, max_length, pure=False,
                            retries=retries).result()["lengths"]
    if n_shards is None:
        n_shards = sum(client.nthreads().values())
    shards = plan_shards(lengths, n_shards or 1, batch_size)
    extract = {"layers": None if layers is None else list(layers), "batch_size": batch_size,
               "max_length": max_length, "with_moments": with_moments}
    futures = [client.submit(_shard, source, load, [texts[i] for i in idx], extract,
                             pure=False, retries=retries) for idx in shards]
    position = {f.key: i for i, f in enumerate(futures)}
    parts = [None] * len(futures)
    with tqdm(total=len(futures), desc="Shards", unit="shard", disable=not progress,
              delay=2) as bar:
        for future in distributed.as_completed(futures, loop=client.loop):
            parts[position[future.key]] = future.result()
            future.release()  # frees the worker's copy; a lost worker need not redo it
            bar.update()
    # The shards ran longest first, shard after shard.
    return Statistics.concat(parts).reordered(in_input_order(np.concatenate(shards)))


def _portable(source) -> str:
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError("Sharding on Dask needs a model name or path the workers can load, "
                         f"got {type(source).__name__}; use scheduler=None for it.")
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(source)


def _describe(source, load, texts=None, max_length=None):
    """On a worker: the model's shape and identity, and each text's token count."""
    loaded = load_model(source, progress=False, **load)
    info = loaded.describe()
    if texts is not None:
        info["lengths"] = np.array([len(ids) for ids in encode(loaded, texts, max_length)[0]])
    return info


def _shard(source, load, texts, extract):
    """On a worker: one shard's statistics, from the model this process keeps."""
    loaded = load_model(source, progress=False, **load)
    return extract_statistics(loaded, texts, progress=False, **extract)
