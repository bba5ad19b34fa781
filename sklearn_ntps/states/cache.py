"""The statistics store: extracted statistics on disk, behind a small in-memory layer.

It keeps the arrays of :meth:`~sklearn_ntps.states.statistics.Statistics.to_arrays`
(any dict of arrays and JSON-able scalars, in fact); it is not the
loaded-model memo nor the de-quantised copies of :mod:`sklearn_ntps.states.models`.
An entry is one folder of ``.npy`` files per (model, settings, texts). Files
are memory-mapped on reading, so picking one layer out of a 31-layer entry
touches that layer only, and a grid search's folds cost no RAM to keep.

Writing protocol, so that a process killed at any moment leaves a whole entry
or none: every file is written and fsynced in a ``.tmp-*`` folder, then
``manifest.json`` (each file's size, the checksum of ``meta.json``) last, then
the folder is fsynced and renamed into place. A folder whose manifest is
missing or does not match its files is a miss. Entries removed or replaced
are first renamed to ``.old-*``; leftovers of killed runs are swept once
stale. The disk cache is capped in size (:func:`resolve_max_bytes`); the least
recently used entries go first, recency being the time of the last hit or
store, kept in each entry's ``used`` file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._utils import atomic_dir, discard_dir, format_bytes
from .._warnings import warn_at_caller

VERSION = 4  # bump when the stored statistics or the entry layout change meaning
FOLDER = "embeddings"  # the store's folder under sklearn_ntps._utils.cache_dir()
# Entries computed in this process stay in RAM until written; memory-mapped
# ones cost nothing, so the budget bounds the first kind only.
MEMORY_BYTES = 1 << 30
MAX_BYTES_ENV = "SKLEARN_NTPS_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 20 * 10**9
# A live writer touches its files continuously; one idle this long was killed.
STALE_SECONDS = 30 * 60
MANIFEST, USED = "manifest.json", "used"
_memory: OrderedDict = OrderedDict()


class Entry(NamedTuple):
    """One folder of the disk cache, as :func:`entries` lists it."""

    name: str
    path: Path
    nbytes: int
    last_used: float
    label: str | None


def key(fingerprint: str, settings, texts) -> str:
    """Cache key of ``texts`` run through the model ``fingerprint`` with ``settings``."""
    h = hashlib.sha256(repr((fingerprint, settings, VERSION)).encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def lookup(folder: Path | None, name: str) -> dict | None:
    """The entry ``name`` from memory, else from ``folder`` (None: memory only)."""
    if name in _memory:
        _memory.move_to_end(name)
        if folder is not None:
            _touch(folder / name)
        return _memory[name]
    if folder is None:
        return None
    found = _read(folder / name)
    if found is not None:
        _touch(folder / name)
        remember(name, found)
    return found


def store(folder: Path | None, name: str, stats: dict, *, max_bytes=None,
          label: str | None = None) -> dict:
    """Keep ``stats`` in memory and, with a folder, on disk; return what to use.

    Parameters
    ----------
    folder : Path or None
        The disk cache; None keeps ``stats`` in memory only.
    name : str
        The entry's :func:`key`.
    stats : dict
        Arrays (one ``.npy`` file each) and JSON-able scalars.
    max_bytes : int, float or str, default=None
        Size cap of ``folder``, in any form :func:`resolve_max_bytes` takes;
        least recently used entries are evicted to meet it, never this one.
    label : str, default=None
        What the entry holds, shown by ``sklearn-ntps cache``.

    Returns
    -------
    dict
        ``stats``, memory-mapped from disk when it was written.
    """
    if folder is not None:
        path = folder / name
        if _write(path, stats, label):
            found = _read(path)
            # Another process may have stored the same key without the moments.
            if found is not None and found.keys() >= stats.keys():
                stats = found  # memory-mapped: frees the RAM copy
            _touch(path)
        try:
            cap = resolve_max_bytes(max_bytes)
        except ValueError as exc:  # the statistics are computed: do not lose them
            warn_at_caller(f"No cache eviction: {exc}")
        else:
            evict(folder, cap, keep=name)
    remember(name, stats)
    return stats


def remember(name: str, stats: dict) -> None:
    """Keep ``stats`` in this process's memory cache, dropping the oldest over budget."""
    _memory[name] = stats
    _memory.move_to_end(name)
    while len(_memory) > 1 and sum(_ram_bytes(s) for s in _memory.values()) > MEMORY_BYTES:
        _memory.popitem(last=False)


def clear_memory() -> None:
    """Forget the entries held in this process (the disk cache stays)."""
    _memory.clear()


def _ram_bytes(stats):
    return sum(v.nbytes for v in stats.values()
               if isinstance(v, np.ndarray) and not isinstance(v, np.memmap))


# -- size cap and eviction ---------------------------------------------------

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text) -> float:
    """Bytes in ``text``: ``"123"``, ``"500M"``, ``"10G"``, ``"1.5TB"``, ``"8GiB"`` or ``"none"``.

    K, M, G, T are powers of 1000 and Ki, Mi, Gi, Ti powers of 1024, with or
    without a trailing B, in any case; ``"none"``, ``"inf"`` and ``"unlimited"``
    mean no cap (``math.inf``).

    >>> parse_size("500M"), parse_size("2GiB"), parse_size("none")
    (500000000, 2147483648, inf)
    """
    if not isinstance(text, str):
        value = float(text)
        if value < 0 or math.isnan(value):
            raise ValueError(f"A cache size must be >= 0 bytes, got {text!r}.")
        return value if math.isinf(value) else int(value)
    if text.strip().lower() in ("none", "inf", "unlimited"):
        return math.inf
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if match is None:
        raise ValueError(f"Cannot read the cache size {text!r}: write bytes ('20000000000'), "
                         "a number with K, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (of "
                         "1024) such as '500M' or '10GiB', or 'none' for no cap.")
    return int(float(match[1]) * _UNITS[match[2] or ""])


def resolve_max_bytes(value=None) -> float:
    """The cache cap in bytes: ``value``, else ``$SKLEARN_NTPS_CACHE_MAX_BYTES``, else 20 GB.

    ``value`` is a number of bytes or a string :func:`parse_size` reads.
    """
    if value is None:
        value = os.environ.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES
        if isinstance(value, str):
            try:
                return parse_size(value)
            except ValueError as exc:
                raise ValueError(f"${MAX_BYTES_ENV}: {exc}") from None
    if isinstance(value, bool):  # a ValueError, like every other bad value of the parameter
        raise ValueError(f"cache_max_bytes must be a size, got {value!r}.")
    return parse_size(value)


def entries(folder: Path) -> list[Entry]:
    """The entries in ``folder``, least recently used first (none if it does not exist)."""
    found = []
    for item in _scan(folder):
        if item.name.startswith(".") or not item.is_dir(follow_symlinks=False):
            continue
        path = Path(item.path)
        label = None
        try:
            used = _mtime(path / USED) or _mtime(path / MANIFEST) or item.stat().st_mtime
            label = json.loads((path / MANIFEST).read_bytes()).get("label")
        except (OSError, ValueError, AttributeError):
            pass
        found.append(Entry(item.name, path, _folder_bytes(path), used or 0.0, label))
    return sorted(found, key=lambda e: (e.last_used, e.name))


def evict(folder: Path, max_bytes: float, *, keep: str | None = None) -> int:
    """Remove least recently used entries until ``folder`` holds at most ``max_bytes``.

    The entry ``keep`` stays whatever its size. Also sweeps the temporary
    folders of killed runs. Returns the number of bytes freed.
    """
    sweep(folder)
    listed = entries(folder)
    total, freed = sum(e.nbytes for e in listed), 0
    for entry in listed:
        if total <= max_bytes:
            break
        if entry.name != keep:
            discard_dir(entry.path)
            _memory.pop(entry.name, None)  # its memory maps would hold the disk space
            total -= entry.nbytes
            freed += entry.nbytes
    if total > max_bytes and keep is not None:
        warn_at_caller(f"The cache entry just stored ({format_bytes(total)}) exceeds the cache "
                       f"cap of {format_bytes(max_bytes)}; raise ${MAX_BYTES_ENV} to keep more.")
    return freed


def clear(folder: Path, *, older_than: float | None = None) -> tuple[int, int]:
    """Remove the entries of ``folder`` (unused for ``older_than`` seconds, if given).

    Returns the number of entries removed and the bytes freed.
    """
    freed = sweep(folder)
    removed = [e for e in entries(folder)
               if older_than is None or e.last_used < time.time() - older_than]
    for entry in removed:
        discard_dir(entry.path)
        _memory.pop(entry.name, None)
    return len(removed), freed + sum(e.nbytes for e in removed)


def sweep(folder: Path, *, stale: float = STALE_SECONDS) -> int:
    """Remove the ``.tmp-*`` and ``.old-*`` folders idle for ``stale`` seconds.

    Returns the number of bytes freed.
    """
    freed = 0
    for item in _scan(folder):
        if item.name.startswith((".tmp-", ".old-")):
            path = Path(item.path)
            try:
                files = [path, *path.iterdir()] if path.is_dir() else [path]
            except OSError:
                continue  # removed meanwhile
            if max((_mtime(p) or 0.0) for p in files) < time.time() - stale:
                freed += _folder_bytes(path)
                shutil.rmtree(path, ignore_errors=True)
    return freed


def _scan(folder):
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _mtime(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _folder_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _touch(path):
    # An explicit timestamp: the kernel's own is coarse (milliseconds), which
    # would tie entries used in quick succession.
    now = time.time_ns()
    try:
        os.utime(path / USED, ns=(now, now))
    except OSError:
        pass  # evicted or replaced meanwhile: nothing to keep recent


# -- one entry on disk ---------------------------------------------------------

def _write(path: Path, stats: dict, label=None) -> bool:
    """Write ``stats`` as the entry ``path``; True if a whole entry is there after."""
    with_moments = "c0" in stats

    def replace(there):
        # An equal entry (another process's, same key) stays; one without the
        # moments we have, or an unreadable one, is swapped out whole.
        found = _read(there, quiet=True)
        return found is None or (with_moments and "c0" not in found)

    try:
        with atomic_dir(path, durable=True, replace=replace) as tmp:
            meta, sizes = {}, {}
            for name, value in stats.items():
                if isinstance(value, np.ndarray):
                    sizes[f"{name}.npy"] = _synced(tmp / f"{name}.npy",
                                                   lambda f, v=value: np.save(f, v))
                else:
                    meta[name] = value.item() if isinstance(value, np.generic) else value
            text = json.dumps(meta).encode()
            sizes["meta.json"] = _synced(tmp / "meta.json", lambda f: f.write(text))
            manifest = {"version": VERSION, "files": sizes, "label": label,
                        "meta_sha256": hashlib.sha256(text).hexdigest()}
            _synced(tmp / MANIFEST, lambda f: f.write(json.dumps(manifest).encode()))
            (tmp / USED).touch()
    except FileExistsError:  # other processes kept replacing it: theirs will do
        return False
    except OSError as exc:
        warn_at_caller(f"Could not write the embedding cache entry {path}: {exc}")
        return False
    return True


def _synced(path, write):
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _read(path: Path, *, quiet=False) -> dict | None:
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
        sizes = manifest["files"]
        if manifest["version"] != VERSION or not isinstance(sizes, dict):
            raise ValueError(f"written by another version ({manifest['version']!r})")
        for file, size in sizes.items():
            if (path / file).stat().st_size != size:
                raise ValueError(f"{file} is not the size its manifest says")
        text = (path / "meta.json").read_bytes()
        if hashlib.sha256(text).hexdigest() != manifest["meta_sha256"]:
            raise ValueError("meta.json does not match its manifest")
        stats = json.loads(text)
        for file in sizes:
            if file.endswith(".npy"):
                stats[file[:-4]] = np.load(path / file, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        # A folder gone meanwhile was evicted or replaced: a plain miss.
        if not quiet and path.is_dir():
            warn_at_caller(f"Ignoring an unreadable cache entry {path}: {exc}")
        return None
    return stats
