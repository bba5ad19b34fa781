"""The console command end to end, on a tiny random model."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn_ntps import cli


def run(*args):
    return cli.main(list(args))


def test_report_end_to_end(tiny_llama, ntps_cache, tmp_path, capsys):
    out = tmp_path / "report"
    status = run("report", "--model", tiny_llama, "--dataset", "sms_spam", "--n-texts", "100",
                 "--n-components", "4", "--output-dir", str(out), "--no-progress")
    assert status == 0
    printed = capsys.readouterr().out
    assert "Spearman with probe accuracy across layers" in printed
    assert "Regret of the layer each score picks, in accuracy points" in printed
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [int(r["layer"]) for r in rows] == [0, 1, 2]
    data = json.loads((out / "report.json").read_text())
    assert data["datasets"]["sms_spam"]["n_texts"] == 100
    assert data["datasets"]["sms_spam"]["n_train"] == [70]  # 7 of 10 blocks
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")


def test_two_models_two_datasets_with_intervals(tiny_llama, ntps_cache, tmp_path, capsys):
    from builders import make_tiny_llama

    other = make_tiny_llama(tmp_path / "other", hidden_size=8, n_layers=1, seed=1)
    out = tmp_path / "report"
    status = run("report", "--model", tiny_llama, "--model", other, "--dataset", "banking77",
                 "--dataset", "sms_spam", "--n-texts", "231", "--n-components", "4",
                 "--n-replicates", "2", "--n-blocks", "4", "--test-blocks", "1",
                 "--output-dir", str(out), "--no-progress")
    assert status == 0
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [(r["dataset"], r["model"]) for r in rows] == (
        [("banking77", tiny_llama)] * 6 + [("banking77", other)] * 4
        + [("sms_spam", tiny_llama)] * 6 + [("sms_spam", other)] * 4)
    summary = {(r["metric"], r["score"], r["group"]): r
               for r in csv.DictReader(open(out / "summary.csv"))}
    for metric in ("layer_spearman", "layer_regret", "model_spearman", "pair_regret",
                   "model_regret[best-layer]"):
        cell = summary[metric, "ntps", "mean"]
        assert float(cell["low"]) <= float(cell["estimate"]) <= float(cell["high"]), metric
    # Two data sets are too few for a rank correlation across data sets.
    assert summary["dataset_spearman", "ntps", "mean"]["estimate"] == "nan"
    assert ("layer_regret", "layer at 2/3 depth", f"{tiny_llama} / sms_spam") in summary
    data = json.loads((out / "report.json").read_text())
    assert data["recommendation"]["pick"] in [*data["scores"], "last layer", "layer at 2/3 depth"]
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [
    (["--n-replicates", "200"], "between 1 and 120"),
    (["--test-blocks", "10"], "--test-blocks must be between 1 and --n-blocks - 1 (9)"),
])
def test_bad_partitions_fail_before_the_model_runs(tmp_path, capsys, args, message):
    assert run("report", "--output-dir", str(tmp_path / "out"), *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "imdb"], "banking77"),
        (["--model", "no-such-model"], "SmolLM2-135M"),
    ],
)
def test_bad_names_list_the_valid_ones(tmp_path, capsys, args, message):
    status = run("report", "--output-dir", str(tmp_path / "out"), *args)
    assert status == 2
    assert message in capsys.readouterr().err


def test_unwritable_output_fails_before_the_model_runs(tmp_path, capsys, monkeypatch):
    from sklearn_ntps.evidence import report

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(report, "run_report", no_model)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run("report", "--output-dir", str(blocker / "out")) == 2
    assert "Cannot write the report" in capsys.readouterr().err


def test_interrupt_writes_nothing(tiny_llama, tmp_path, capsys, monkeypatch):
    from sklearn_ntps.evidence import report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "run_report", interrupted)
    out = tmp_path / "out"
    assert run("report", "--model", tiny_llama, "--output-dir", str(out)) == 130
    assert not out.exists()  # not even the folder the run made
    assert "no output file was written" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "sklearn_ntps.cli", "report", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--model" in result.stdout and "--full" in result.stdout


def test_lora_prescreen_help_says_what_was_measured(capsys, monkeypatch):
    from pathlib import Path

    from sklearn_ntps.lora.prescreen import RULE, STUDY_V3

    monkeypatch.setenv("COLUMNS", "1000")  # one line each: no break inside a hyphenated name
    with pytest.raises(SystemExit):
        run("lora-prescreen", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "predicts" not in text and "recommendation only" not in text
    assert "could not detect whether NTPS, or any score of the frozen model, relates to the " \
        "gain" in text
    assert "prints the studies' gains at their own sizes" in text
    assert f"section 5; {RULE['n_rows']} rows, {RULE['n_tasks']} tasks)" in text
    assert f"v3 ({STUDY_V3['n_tasks']} tasks, {STUDY_V3['n_train']:,} texts each)" in text
    # --subtasks: random groups, and how study v2 chose its own instead
    assert "classes drawn at random" in text
    assert "v2 chose them by all-MiniLM-L6-v2's class centroids (greedy groups of mutually " \
        "close classes, choose_groups in docs/lora_study.py), not at random" in text
    study = (Path(__file__).parents[1] / "docs/lora_study.py").read_text()
    assert "def choose_groups(" in study and '"centroid_model": "all-MiniLM-L6-v2"' in study


def test_cache_command_info_and_clear(tmp_path, monkeypatch, capsys):
    import os
    import time

    import numpy as np

    from sklearn_ntps.states import cache

    monkeypatch.setenv("SKLEARN_NTPS_CACHE", str(tmp_path))
    monkeypatch.delenv(cache.MAX_BYTES_ENV, raising=False)
    folder = tmp_path / "embeddings"
    for name in ("old", "new"):
        cache.store(folder, name, {"a": np.zeros(1000 if name == "old" else 3000)},
                    label=f"{name} texts")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(folder / "old" / cache.USED, (ten_days_ago, ten_days_ago))
    cache.clear_memory()
    assert run("cache") == 0
    printed = capsys.readouterr().out
    assert str(folder) in printed and "2 entries, 32.6 kB of a 20.0 GB cap (the default" in printed
    largest, oldest = printed.split("Least recently used:")
    assert largest.index("new texts") < largest.index("old texts")
    assert oldest.index("old texts") < oldest.index("new texts")
    monkeypatch.setenv(cache.MAX_BYTES_ENV, "500M")
    assert run("cache", "info") == 0
    assert "500.0 MB cap ($SKLEARN_NTPS_CACHE_MAX_BYTES)" in capsys.readouterr().out
    assert run("cache", "clear", "--older-than", "5") == 0
    assert "Removed 1 entries" in capsys.readouterr().out
    assert [e.name for e in cache.entries(folder)] == ["new"]
    assert run("cache", "clear") == 0
    assert "Removed 1 entries" in capsys.readouterr().out and cache.entries(folder) == []
    assert run("cache", "--older-than", "1") == 2
    assert "after 'clear'" in capsys.readouterr().err
    monkeypatch.setenv(cache.MAX_BYTES_ENV, "lots")
    assert run("cache") == 2
    assert "SKLEARN_NTPS_CACHE_MAX_BYTES" in capsys.readouterr().err


def test_cache_command_imports_no_model_code(tmp_path):
    code = ("import sys; from sklearn_ntps import cli; cli.main(['cache']); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    env = {**__import__("os").environ, "SKLEARN_NTPS_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "0 entries" in result.stdout


def test_missing_matplotlib_fails_before_the_model_runs(tmp_path, capsys, monkeypatch):
    import importlib.util

    from sklearn_ntps.evidence import report

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(report, "run_report", no_model)
    assert run("report", "--output-dir", str(tmp_path / "out")) == 2
    assert "pip install 'sklearn-ntps[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ select, and --data
def write_texts(path, n=36, *, seed=0, labels=("card", "film"), columns=("text", "label")):
    """A CSV or JSON-lines file of texts in the tiny models' words, two classes."""
    import numpy as np

    from builders import TINY_WORDS

    rng = np.random.default_rng(seed)
    rows = [(" ".join(rng.choice(TINY_WORDS[3:], size=rng.integers(2, 9))), labels[i % 2])
            for i in range(n)]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, r))) + "\n" for r in rows))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
    return path


def test_select_on_a_csv(tiny_llama, ntps_cache, tmp_path, capsys):
    from builders import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert", hidden_size=8, n_layers=1, seed=1)
    out = tmp_path / "out"
    status = run("select", "--data", str(write_texts(tmp_path / "d.csv")), "--model", tiny_llama,
                 "--model", bert, "--n-blocks", "3", "--output-dir", str(out), "--no-progress")
    assert status == 0
    printed = capsys.readouterr().out
    # Two models: rule M's default for choosing among models.
    assert "hscore (the default for choosing among models: rule M" in printed
    assert "on 36 texts, 2 classes" in printed and "its chance level" in printed
    assert "Margin over the runner-up" in printed and "Pick: " in printed
    rows = list(csv.DictReader(open(out / "select.csv")))
    assert sorted((r["model"], int(r["layer"])) for r in rows) == sorted(
        [(tiny_llama, i) for i in range(3)] + [(bert, i) for i in range(2)])
    best = max(rows, key=lambda r: float(r["score"]))
    assert rows[0] == best and best["picked"] == "True"
    data = json.loads((out / "select.json").read_text())
    assert (data["pick"]["model"], data["pick"]["layer"]) == (best["model"], int(best["layer"]))
    margin = data["margin"]
    assert margin["low"] <= margin["value"] <= margin["high"] and len(margin["blocks"]) == 3
    assert margin["value"] == float(best["score"]) - float(rows[1]["score"])
    assert (out / "select.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("command", [
    ["select", "--n-blocks", "3"],
    ["report", "--n-components", "4"],
    ["lora-prescreen", "--no-lora", "--n-test", "10"],
])
def test_no_cache_leaves_the_statistics_store_alone(tiny_llama, ntps_cache, tmp_path, capsys,
                                                     command):
    from sklearn_ntps.states import cache

    data = str(write_texts(tmp_path / "d.csv", n=60))
    args = [*command, "--data", data, "--model", tiny_llama, "--no-plot", "--no-progress"]
    assert run(*args, "--no-cache", "--output-dir", str(tmp_path / "a")) == 0
    assert not ntps_cache.exists() or not cache.entries(ntps_cache / cache.FOLDER)
    cache.clear_memory()
    assert run(*args, "--output-dir", str(tmp_path / "b")) == 0
    assert cache.entries(ntps_cache / cache.FOLDER)
    capsys.readouterr()


def test_select_on_json_lines_with_other_columns(tiny_llama, ntps_cache, tmp_path, capsys):
    path = write_texts(tmp_path / "d.jsonl", labels=(0, 1), columns=("utterance", "intent"))
    out = tmp_path / "out"
    status = run("select", "--data", str(path), "--text-column", "utterance", "--label-column",
                 "intent", "--model", tiny_llama, "--layers=-2,-1", "--score", "hscore",
                 "--aggregate", "layer-mean", "--n-blocks", "2", "--no-plot", "--output-dir",
                 str(out), "--no-progress", "--torch-dtype", "bfloat16")
    assert status == 0
    assert capsys.readouterr().out.startswith("hscore on 36 texts, 2 classes")
    assert sorted(p.name for p in out.iterdir()) == ["select.csv", "select.json"]
    data = json.loads((out / "select.json").read_text())
    assert data["score"] == "hscore" and data["aggregate"] == "layer-mean"
    assert data["dtype"] == "bfloat16"
    assert sorted(r["layer"] for r in data["rows"]) == [1, 2]


@pytest.mark.parametrize("write, args, message", [
    (lambda p: write_texts(p, columns=("sentence", "label")), [],
     "has no column 'text' (the text_column); columns found: 'sentence', 'label'"),
    (lambda p: p.write_text(""), [], "d.csv is empty"),
    (lambda p: write_texts(p, labels=("card", "card")), [], "a single class ('card')"),
    (lambda p: p.write_bytes(b"text,label\nhello,a\n\xff\xfe,b\n"), [],
     "not UTF-8 text: byte 0xff at offset 19 (line 3)"),
    (lambda p: write_texts(p, labels=("1", "spam")), [],
     "the label column mixes types: number ('1', line 2); string ('spam', line 3)"),
    (write_texts, ["--score", "accuracy"], "--score must be None, a str among {"),
    (write_texts, ["--model", "no-such-model"], "Unknown model 'no-such-model'"),
])
def test_select_fails_clearly_and_writes_nothing(tiny_llama, tmp_path, capsys, monkeypatch,
                                                 write, args, message):
    from sklearn_ntps.states.embedding import HFEmbeddingTransformer

    def no_model(*a, **k):
        raise AssertionError("the model must not run")

    # The selector checks everything before its first forward pass.
    monkeypatch.setattr(HFEmbeddingTransformer, "transform_layers", no_model)
    path = tmp_path / "d.csv"
    write(path)
    out = tmp_path / "out"
    assert run("select", "--data", str(path), "--model", tiny_llama, *args,
               "--output-dir", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("sklearn-ntps: error: ") and message in err
    assert not out.exists()


def test_report_trains_on_data_and_tests_on_test_data(tiny_llama, ntps_cache, tmp_path,
                                                      capsys):
    train = write_texts(tmp_path / "train.csv", n=40)
    test = write_texts(tmp_path / "test.jsonl", n=20, seed=1)
    out = tmp_path / "out"
    status = run("report", "--model", tiny_llama, "--data", str(train), "--test-data", str(test),
                 "--n-components", "4", "--no-plot", "--output-dir", str(out), "--no-progress")
    assert status == 0
    assert "Spearman with probe accuracy across layers" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["datasets"] == {"train.csv": {"n_texts": 60, "n_classes": 2, "n_train": [40]}}
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [(int(r["layer"]), r["replicate"]) for r in rows] == [(0, "0"), (1, "0"), (2, "0")]
    # An accuracy over the 20 test texts: a whole number of them right.
    right = [20 * float(r["probe_accuracy"]) for r in rows]
    assert right == pytest.approx(np.round(right))


@pytest.mark.parametrize("args, message", [
    (["--test-data", "t.csv"], "--test-data needs --data"),
    (["--data", "d.csv", "--test-data", "t.csv", "--n-replicates", "2"],
     "--test-data is one fixed partition"),
])
def test_report_test_data_options(tmp_path, capsys, args, message):
    assert run("report", *args, "--output-dir", str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err


def test_an_error_in_the_selector_leaves_no_folder(tiny_llama, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("select", "--data", str(write_texts(tmp_path / "d.csv")), "--model", tiny_llama,
               "--n-blocks", "30", "--output-dir", str(out), "--no-progress") == 2
    assert "hold a single class" in capsys.readouterr().err
    assert not out.exists()
