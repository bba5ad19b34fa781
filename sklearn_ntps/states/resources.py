"""Size a run before it starts: whether its statistics fit in memory and on the cache's disk.

An extraction keeps ``2 L d^2`` float64 numbers of moments (4.4 GB for an 8B
model's 33 layers) and the pooled features of every text; finding out an hour
in is worse than a clear error with the figure before the first forward pass.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from .._utils import format_bytes

__all__ = ["DISK_MARGIN", "ResourceError", "available_memory", "check_resources", "free_disk",
           "statistics_nbytes"]

DISK_MARGIN = 1 << 30  # left free for everything else on the disk


class ResourceError(MemoryError, ValueError):
    """The statistics asked for do not fit in the free memory or disk."""


def statistics_nbytes(n_layers: int, n_features: int, n_texts: int, *,
                      with_moments: bool = True) -> int:
    """Bytes of one extraction's statistics: one cache entry's size.

    Two pooled features of ``8 L n d`` bytes each, and with the moments
    ``c0`` and ``c1`` of ``8 L d^2`` bytes each and the two first-order sums
    of ``8 L d`` bytes each.

    Examples
    --------
    >>> from sklearn_ntps.states.resources import statistics_nbytes
    >>> statistics_nbytes(1, 2, 3) == 8 * (2 * 3 * 2 + 2 * 2**2 + 2 * 2)
    True
    """
    per_layer = 2 * n_texts * n_features
    if with_moments:
        per_layer += 2 * n_features**2 + 2 * n_features
    return 8 * n_layers * per_layer


def check_resources(n_layers: int, n_features: int, n_texts: int, *, with_moments: bool = True,
                    folder: Path | None = None, advice: str | None = None) -> int:
    """Raise a :class:`ResourceError` if an extraction's statistics cannot fit.

    Parameters
    ----------
    n_layers, n_features, n_texts : int
        Hidden states kept (L), hidden size (d) and texts (n).
    with_moments : bool, default=True
        Whether the ``d x d`` moments of every layer are accumulated.
    folder : Path, default=None
        The disk cache the statistics will be written to; None: no disk check.
    advice : str, default=None
        The way out offered to the user, in place of the default.

    Returns
    -------
    int
        The bytes of memory the statistics need: the moments, and the two
        poolings' features three times over (the batches' chunks, their
        concatenation, and the copy put back in input order).
    """
    on_disk = statistics_nbytes(n_layers, n_features, n_texts, with_moments=with_moments)
    in_memory = on_disk + 32 * n_layers * n_texts * n_features
    what = f"The statistics of {n_layers} layers of d={n_features} for {n_texts} texts"
    formula = ("2 x L x d^2 x 8 bytes of moments and 6 x L x n x d x 8 of pooled features"
               if with_moments else "6 x L x n x d x 8 bytes of pooled features")
    free = available_memory()
    if free is not None and in_memory > free:
        raise ResourceError(
            f"{what} need {format_bytes(in_memory)} in memory ({formula}), but "
            f"{format_bytes(free)} is available; "
            + (advice or ("pass layers=[...] to keep fewer layers, or output='pooled' to skip "
                          "the moments." if with_moments else "embed fewer texts per call, or "
                          "pass layers=[...] to keep fewer layers.")))
    disk = free_disk(folder) if folder is not None else None
    if disk is not None and on_disk > disk - DISK_MARGIN:
        raise ResourceError(
            f"{what} need {format_bytes(on_disk)} in the cache {folder}, but its disk has "
            f"{format_bytes(disk)} free (of which {format_bytes(DISK_MARGIN)} stays free); run "
            "'sklearn-ntps cache clear', point $SKLEARN_NTPS_CACHE at a larger disk, or pass "
            "cache=False.")
    return in_memory


def available_memory() -> int | None:
    """Bytes this process may still allocate, or None if unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (free pages miss the reclaimable page
    cache), else the free physical pages, lowered to a cgroup v2 limit if any.
    """
    free = None
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        root = Path("/sys/fs/cgroup")
        limit = (root / "memory.max").read_text().strip()
        if limit != "max":
            stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
            used = int((root / "memory.current").read_text()) - int(stat.get("inactive_file", 0))
            free = min(free if free is not None else math.inf, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def free_disk(folder: Path) -> int | None:
    """Free bytes on the disk that holds (or will hold) ``folder``, or None if unknown."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
