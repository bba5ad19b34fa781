"""sklearn_ntps.datasets.load_table: the user's own files, and a clear error for each bad one."""

import json
import sys
import warnings

import numpy as np
import pytest

from sklearn_ntps.datasets import load_table

ROWS = [("my card was declined", "card"), ("where is my transfer", "transfer"),
        ("card stuck in the machine", "card"), ("transfer not arrived", "transfer")]


def write_csv(path, rows, header=("text", "label"), delimiter=","):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_delimited_files_give_texts_and_labels(tmp_path, suffix):
    rows = [*ROWS, ('a "quoted", multi-line\ntext', "card")]
    path = write_csv(tmp_path / f"data{suffix}", rows, delimiter="," if suffix == ".csv" else "\t")
    data = load_table(path)
    assert data.data == [t for t, _ in rows]
    assert data.target.tolist() == [label for _, label in rows]
    assert data.target_names.tolist() == ["card", "transfer"]
    assert data.filename == str(path) and "5 texts and 2 classes" in data.DESCR


def test_other_column_names_and_numeric_labels(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("one", "0"), ("two", "1"), ("three", "1")],
                     header=("utterance", "intent"))
    texts, labels = load_table(path, text_column="utterance", label_column="intent",
                               return_X_y=True)
    assert texts == ["one", "two", "three"]
    # Labels that read as numbers are numbers, so "1" in a CSV and 1 in JSON agree.
    assert labels.dtype.kind == "i" and labels.tolist() == [0, 1, 1]


def test_json_lines_and_a_json_array(tmp_path):
    records = [{"text": t, "label": label, "extra": 1} for t, label in ROWS]
    lines = write_jsonl(tmp_path / "d.jsonl", records)
    # A blank line in between is fine.
    lines.write_text(lines.read_text().replace("\n", "\n\n", 1))
    array = tmp_path / "d.json"
    array.write_text(json.dumps(records))
    for path in (lines, array):
        texts, labels = load_table(path, return_X_y=True)
        assert texts == [t for t, _ in ROWS] and labels.tolist() == [lb for _, lb in ROWS]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in ROWS], "label": [1, 2, 1, 2]}), path)
    texts, labels = load_table(path, return_X_y=True)
    assert texts == [t for t, _ in ROWS] and labels.tolist() == [1, 2, 1, 2]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    # None in sys.modules makes an import fail, as when the package is missing.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-ntps\[data\]'"):
        load_table(path)


def test_empty_texts_are_dropped_with_a_warning(tmp_path):
    path = write_csv(tmp_path / "d.csv", [ROWS[0], ("  ", "card"), ROWS[1], ("", "x")])
    with pytest.warns(UserWarning, match=r"d.csv: dropped 2 row\(s\) whose text is empty: "
                                         r"line 3, line 5"):
        texts, labels = load_table(path, return_X_y=True)
    assert texts == [ROWS[0][0], ROWS[1][0]] and labels.tolist() == ["card", "transfer"]


@pytest.mark.parametrize("write, message", [
    (lambda p: write_csv(p, ROWS, header=("sentence", "label")),
     r"no column 'text' \(the text_column\); columns found: 'sentence', 'label'"),
    (lambda p: p.write_bytes(b""), r"d.csv is empty"),
    (lambda p: p.write_text("text,label\n"), r"d.csv has no rows"),
    (lambda p: write_csv(p, []), r"d.csv has no rows"),
    (lambda p: write_csv(p, [("a", "card"), ("b", "card")]),
     r"a single class \('card'\) in column 'label'"),
    (lambda p: p.write_bytes(b"text,label\nok,card\ncaf\xe9,transfer\n"),
     r"not UTF-8 text: byte 0xe9 at offset 22 \(line 3\)"),
    (lambda p: write_csv(p, [("a", "1"), ("b", "2"), ("c", "spam")]),
     r"mixes types: number \('1', line 2\); string \('spam', line 4\)"),
    (lambda p: write_csv(p, [("a", "1"), ("b", "")]), r"d.csv, line 3: no label"),
    (lambda p: write_csv(p, [("   ", "1"), ("", "2")]), r"every text is empty"),
])
def test_bad_csv_files_name_the_file_and_the_problem(tmp_path, write, message):
    path = tmp_path / "d.csv"
    write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped empty texts: tested above
        with pytest.raises(ValueError, match=message) as caught:
            load_table(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("lines, message", [
    ([{"text": "a", "label": 1}, {"text": "b", "label": "spam"}],
     r"mixes types: number \(1, line 1\); string \('spam', line 2\)"),
    ([{"text": "a", "label": True}, {"text": "b", "label": 0}],
     r"mixes types: boolean \(True, line 1\); number \(0, line 2\)"),
    ([{"text": "a", "label": [1]}, {"text": "b", "label": [2]}], r"must be a number or a string"),
    ([{"text": 3, "label": 1}, {"text": "b", "label": 2}],
     r"line 1: the text must be a string, got int 3"),
    ([["a", 1]], r"line 1: expected an object of columns, got list"),
])
def test_bad_json_lines(tmp_path, lines, message):
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    with pytest.raises(ValueError, match=message):
        load_table(path)


def test_broken_json_says_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(ValueError, match=r"d.jsonl, line 2: not valid JSON"):
        load_table(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_table(tmp_path / "nothing.csv")
    (tmp_path / "d.xlsx").write_text("")
    with pytest.raises(ValueError, match=r"d.xlsx: cannot tell the format.*\.csv, \.tsv"):
        load_table(tmp_path / "d.xlsx")


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\na,x\nb,y\n".encode())
    assert load_table(path).data == ["a", "b"]
    assert np.array_equal(load_table(path).target_names, ["x", "y"])
