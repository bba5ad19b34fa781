"""Where extracted statistics are kept: a small memory cache over a disk cache.

An entry is one folder of ``.npy`` files per (model, settings, texts). Files
are memory-mapped on reading, so picking one layer out of a 31-layer entry
touches that layer only, and a grid search's folds cost no RAM to keep.
Entries are written to a temporary folder that is renamed into place: an
interrupted run leaves a complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

VERSION = 3  # bump when the stored statistics change meaning
# Entries computed in this process stay in RAM until written; memory-mapped
# ones cost nothing, so the budget bounds the first kind only.
MEMORY_BYTES = 1 << 30
_memory: OrderedDict = OrderedDict()


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
        return _memory[name]
    if folder is None:
        return None
    found = _read(folder / name)
    if found is not None:
        remember(name, found)
    return found


def store(folder: Path | None, name: str, stats: dict) -> dict:
    """Keep ``stats`` in memory and, with a folder, on disk; return what to use."""
    if folder is not None and _write(folder / name, stats):
        stats = _read(folder / name) or stats  # memory-mapped: frees the RAM copy
    remember(name, stats)
    return stats


def remember(name: str, stats: dict) -> None:
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


def _write(path: Path, stats: dict) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-"))
    except OSError as exc:
        warnings.warn(f"Could not write the embedding cache in {path.parent}: {exc}", stacklevel=4)
        return False
    try:
        meta = {}
        for name, value in stats.items():
            if isinstance(value, np.ndarray):
                np.save(tmp / f"{name}.npy", value)
            else:
                meta[name] = value
        (tmp / "meta.json").write_text(json.dumps(meta))
        if path.exists():
            # An entry without the moments is being completed: swap it out whole.
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=".old-")) / "entry"
            os.replace(path, old)
            shutil.rmtree(old.parent, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _read(path: Path) -> dict | None:
    if not path.is_dir():
        return None
    try:
        stats = json.loads((path / "meta.json").read_text())
        for f in path.glob("*.npy"):
            stats[f.stem] = np.load(f, mmap_mode="r")
    except (OSError, ValueError) as exc:
        warnings.warn(f"Ignoring an unreadable cache entry {path}: {exc}", stacklevel=4)
        return None
    return stats
