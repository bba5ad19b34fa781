"""Your own labelled texts, from a CSV, TSV, JSON-lines or Parquet file.

Every error names the file, and the line (or row) where it can: a missing
column lists the columns found, bytes that are not UTF-8 give their offset.
CSV, TSV and JSON need the standard library only; Parquet needs pyarrow (or
pandas with a Parquet engine), the ``data`` extra.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from numbers import Number
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._utils import optional_import

__all__ = ["FORMATS", "load_table"]

# File suffix -> format; the format is read from the name, never guessed from the bytes.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def load_table(path, *, text_column="text", label_column="label", return_X_y=False):
    r"""Load labelled texts from a CSV, TSV, JSON-lines or Parquet file.

    The format comes from the file's suffix: ``.csv``, ``.tsv`` (or
    ``.tab``), ``.jsonl`` (or ``.ndjson``; ``.json`` may also hold one array
    of records), ``.parquet`` (or ``.pq``, which needs
    ``pip install 'sklearn-ntps[data]'``). Text files must be UTF-8 (a byte
    order mark is allowed) and CSV/TSV files need a header row.

    Rows whose text is empty or whitespace only are dropped, with a warning
    that says how many and where (a model cannot embed them, and one bad row
    should not stop a run); every other problem is an error naming the file:
    a missing column (the columns found are listed), no rows, a row without a
    label, a single class, bytes that are not UTF-8 (their offset and line),
    a label column that mixes numbers and strings (an example of each).

    Parameters
    ----------
    path : str or path-like
    text_column : str, default="text"
    label_column : str, default="label"
    return_X_y : bool, default=False
        Return ``(texts, labels)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (list of str), ``target`` (ndarray of the labels as the file
        holds them: numbers, or strings; so a training and a test file agree),
        ``target_names`` (the sorted distinct labels), ``filename`` and
        ``DESCR``.
    (texts, labels) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        On any problem with its contents, naming the file (and line).
    ImportError
        For Parquet without pyarrow, naming the extra that brings it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_ntps.datasets import load_table
    >>> path = Path(tempfile.mkdtemp()) / "tickets.csv"
    >>> _ = path.write_text("text,label\nmy card was declined,card\n"
    ...                     "where is my transfer,transfer\n \t,card\n")
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     texts, labels = load_table(path, return_X_y=True)
    >>> texts, labels.tolist()
    (['my card was declined', 'where is my transfer'], ['card', 'transfer'])
    >>> print(str(caught[0].message).split("tickets.csv: ")[1])
    dropped 1 row(s) whose text is empty: line 4.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                         f"use one of {', '.join(FORMATS)}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty.")
    columns, records = _READERS[kind](path)
    # CSV and TSV hold text only: a label there is a number when it reads as one.
    texts, labels = _texts_and_labels(path, columns, records, text_column, label_column,
                                      parse=kind in ("csv", "tsv"))
    if return_X_y:
        return texts, labels
    names = np.unique(labels)
    return Bunch(data=texts, target=labels, target_names=names, filename=str(path),
                 DESCR=f"{len(texts)} texts and {names.size} classes from {path} (columns "
                       f"{text_column!r} and {label_column!r}).")


# ------------------------------------------------------------------ readers
# Each returns (columns, records): the column names found, and (where, {column: value}) per row.

def _decoded(path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start} (line {line}); save it as UTF-8.") from None


def _read_delimited(path, delimiter):
    reader = csv.DictReader(io.StringIO(_decoded(path), newline=""), delimiter=delimiter)
    try:
        columns = reader.fieldnames or []
        records = [(f"line {reader.line_num}", row) for row in reader]
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num}: {exc}.") from None
    return columns, records


def _read_json_lines(path, text=None):
    columns, records = {}, []
    for number, line in enumerate((text or _decoded(path)).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg}).") from None
        records.append((f"line {number}", _record(path, f"line {number}", record)))
        columns.update(dict.fromkeys(record))
    return list(columns), records


def _read_json(path):
    text = _decoded(path)
    if not text.lstrip().startswith("["):
        return _read_json_lines(path, text)
    try:
        array = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    records = [(f"record {i}", _record(path, f"record {i}", r)) for i, r in enumerate(array, 1)]
    columns = dict.fromkeys(c for _, r in records for c in r)
    return list(columns), records


def _record(path, where, record):
    if not isinstance(record, dict):
        raise ValueError(f"{path}, {where}: expected an object of columns, got "
                         f"{type(record).__name__}.")
    return record


def _read_parquet(path):
    try:
        pq = optional_import("pyarrow.parquet", "data", "Reading Parquet")
    except ImportError as missing:
        try:  # pandas with another engine (fastparquet) will do
            frame = __import__("pandas").read_parquet(path)
        except ImportError:
            raise missing from None
        columns, rows = [str(c) for c in frame.columns], frame.to_dict("records")
    else:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's own errors: not a Parquet file, truncated
            raise ValueError(f"{path}: not a readable Parquet file ({exc}).") from None
        columns, rows = table.column_names, table.to_pylist()
    return columns, [(f"row {i}", r) for i, r in enumerate(rows, start=1)]


_READERS = {"csv": lambda p: _read_delimited(p, ","), "tsv": lambda p: _read_delimited(p, "\t"),
            "jsonl": _read_json_lines, "json": _read_json, "parquet": _read_parquet}


# ------------------------------------------------------------------ checks
def _texts_and_labels(path, columns, records, text_column, label_column, *, parse):
    for column, option in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise ValueError(f"{path} has no column {column!r} (the {option}); columns found: "
                             f"{found}.")
    if not records:
        raise ValueError(f"{path} has no rows.")
    texts, labels, wheres, dropped = [], [], [], []
    for where, record in records:
        label, text = record.get(label_column), record.get(text_column)
        if _is_missing(label):
            raise ValueError(f"{path}, {where}: no label in column {label_column!r}.")
        if _is_missing(text):
            text = ""
        if not isinstance(text, str):
            raise ValueError(f"{path}, {where}: the text must be a string, got "
                             f"{type(text).__name__} {text!r}.")
        if not text.strip():
            dropped.append(where)
            continue
        texts.append(text)
        labels.append(label)
        wheres.append(where)
    if dropped:
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        warnings.warn(f"{path}: dropped {len(dropped)} row(s) whose text is empty: {shown}.",
                      UserWarning, stacklevel=3)
    if not texts:
        raise ValueError(f"{path}: every text is empty.")
    labels = _labels_of_one_type(path, labels, wheres, parse=parse)
    present = np.unique(labels)
    if present.size < 2:
        raise ValueError(f"{path} has a single class ({present[0].item()!r}) in column "
                         f"{label_column!r}: a score compares classes, so at least two are "
                         "needed.")
    return texts, labels


def _is_missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _labels_of_one_type(path, labels, wheres, *, parse):
    """The labels as one array: all numbers or all strings.

    Otherwise an error with an example of each kind. Labels read as text (CSV, TSV) are
    numbers when they parse as numbers.
    """
    kinds, values = [], []
    for label in labels:
        kind, value = _kind(label, parse=parse)
        kinds.append(kind)
        values.append(value)
    found = list(dict.fromkeys(kinds))
    if "other" in found or len(found) > 1:
        examples = "; ".join(f"{k} ({labels[kinds.index(k)]!r}, {wheres[kinds.index(k)]})"
                             for k in found)
        raise ValueError(f"{path}: the label column mixes types: {examples}. Use labels of one "
                         "type: all numbers or all strings."
                         if len(found) > 1 else
                         f"{path}: a label must be a number or a string: {examples}.")
    return np.asarray(values)


def _kind(label, *, parse):
    if isinstance(label, bool):
        return "boolean", label
    if isinstance(label, Number):
        return "number", label
    if not isinstance(label, str):
        return "other", label
    if parse:
        for convert in (int, float):
            try:
                number = convert(label)
            except ValueError:
                continue
            if math.isfinite(number):
                return "number", number
    return "string", label
