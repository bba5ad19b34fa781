"""The re-read of docs/validity.md, section 4 (docs/validity_reread.py and the functions of
sklearn_ntps.evidence.study it calls), on synthetic rows of known structure only: its protocol
was fixed before any number of the stored rows was read, so no test here reads one."""

import csv
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from sklearn_ntps.choice.protocol import task_interval
from sklearn_ntps.evidence.reread import (
    noise_floor,
)
from sklearn_ntps.evidence.study import table_wins

DOCS = Path(__file__).parent.parent / "docs"
SCRIPT = DOCS / "validity_reread.py"


@pytest.fixture(scope="module")
def reread():
    return runpy.run_path(str(SCRIPT))


def noise(model, acc, rng):
    return rng.normal(size=acc.size)


def study_rows(scores, *, models=("SmolLM2-135M", "all-MiniLM-L6-v2"), n_datasets=5,
               n_layers=5, n_replicates=3, seed=0):
    """Rows of a fake study: every score column of the re-read, ``scores[name](model, acc,
    rng)`` giving a column's values over one task's layers (the default: noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for d in range(n_datasets):
            acc = rng.uniform(0.5, 0.9, size=n_layers)
            for rep in range(n_replicates):
                a = acc + 0.01 * rng.normal(size=n_layers)
                columns = {s: scores.get(s, noise)(model, a, rng) for s in SCORE_COLUMNS}
                rows += [{"model": model, "dataset": f"d{d}", "layer": layer, "replicate": rep,
                          "probe_accuracy": a[layer], **{s: v[layer] for s, v in columns.items()}}
                         for layer in range(n_layers)]
    return rows


SCORE_COLUMNS = ("ntps", "ntps_paper", "ntps_paper_exact", "logme", "hscore", "transrate",
                 "rankme", "knn", "ridge_loo")


def write_rows(rows, folder):
    folder.mkdir(parents=True)
    by_file = {}
    for r in rows:
        by_file.setdefault((r["dataset"], r["model"]), []).append(r)
    for (dataset, model), mine in by_file.items():
        with open(folder / f"{dataset}__{model}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(mine[0]))
            writer.writeheader()
            writer.writerows(mine)


# ----------------------------------------------------------------- the protocol's constants
def test_the_candidates_are_the_study_tables_columns(reread):
    from sklearn_ntps.scores.registry import default_scorers

    assert reread["SCORES"] == SCORE_COLUMNS == tuple(default_scorers())
    assert reread["CANDIDATES"][-2:] == ("last layer", "layer at 2/3 depth")
    assert sorted(reread["CHEAPNESS"]) == sorted(SCORE_COLUMNS)
    assert reread["CHEAPNESS"][-3:] == ("ntps", "ntps_paper", "ntps_paper_exact")
    study = runpy.run_path(str(DOCS / "validity_study.py"))
    assert reread["MODELS"] == study["MODELS"] and reread["DECODER"] == study["MODELS"][0]
    # The stored rows have every column (their header only: no number is read).
    for path in sorted((DOCS / "validity" / "rows").glob("*.csv")):
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        assert set(SCORE_COLUMNS) | {"probe_accuracy"} <= set(header), path.name


def test_loading_the_script_writes_nothing():
    folder = DOCS / "validity"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    namespace = runpy.run_path(str(SCRIPT))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert callable(namespace["main"])


# ----------------------------------------------------------------- two-way intervals






# ----------------------------------------------------------------- lowest-regret share


def test_table_wins_share_ties():
    table = {"a": {1: 0.0, 2: 1.0, 3: 2.0}, "b": {1: 0.0, 2: 1.0, 3: 1.0},
             "c": {1: 0.0, 2: 4.0, 3: np.nan}}
    assert table_wins(table) == {"a": 2, "b": 3, "c": 1}
    assert table_wins(table, shared=True) == pytest.approx({"a": 1 / 3 + 1 / 2, "b": 1 / 3 + 1 / 2
                                                                 + 1, "c": 1 / 3})


# ----------------------------------------------------------------- the noise floor




# ----------------------------------------------------------------- rule M






# ----------------------------------------------------------------- the script
def test_per_model_tables_tell_a_score_perfect_on_one_model_from_noise_on_another(reread):
    # NTPS is the probe's accuracy on the decoder and noise on the encoder.
    def ntps(model, a, rng):
        return a.copy() if model == "SmolLM2-135M" else rng.normal(size=a.size)

    rows = study_rows({"ntps": ntps})
    data = reread["reread"](rows, n_boot=200)
    dec = data["by_model"]["SmolLM2-135M"]["candidates"]["ntps"]
    enc = data["by_model"]["all-MiniLM-L6-v2"]["candidates"]["ntps"]
    assert dec["spearman"]["estimate"] == pytest.approx(1.0)
    assert dec["regret"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert dec["wins"] > 0 and dec["lowest_share"] > 0.95
    # The encoder's: each data set's mean over replicates of Spearman's rho, then their mean.
    expected = []
    for d in range(5):
        rhos = []
        for rep in range(3):
            mine = [r for r in rows if (r["model"], r["dataset"], r["replicate"])
                    == ("all-MiniLM-L6-v2", f"d{d}", rep)]
            rhos.append(spearmanr([r["ntps"] for r in mine],
                                  [r["probe_accuracy"] for r in mine]).statistic)
        expected.append(np.mean(rhos))
    assert enc["spearman"]["estimate"] == pytest.approx(np.mean(expected))
    assert enc["spearman"]["estimate"] < 0.9 and enc["regret"]["estimate"] > 1.0
    # The models' order: the decoder first; the README's lines are about it.
    assert list(data["by_model"]) == ["SmolLM2-135M", "all-MiniLM-L6-v2"]
    page = reread["markdown"]({**data, "provenance": None})
    readme = page[page.index("## For the README"):]
    assert "SmolLM2-135M, the study's only decoder" in readme
    assert page.index("## 1. Per model") < page.index("## 2. All tasks")


def test_above_the_floor_is_the_regret_minus_the_floor_task_by_task(reread):
    rows = study_rows({"logme": lambda m, a, rng: a + 0.02 * rng.normal(size=a.size)})
    tables = reread["task_tables"](rows)
    floor = noise_floor(rows)
    for c in ("logme", "last layer"):
        for t, v in tables["regret"][c].items():
            assert tables["above"][c][t] == pytest.approx(v - floor[t])
    a = reread["all_tasks"](tables, n_boot=200)
    cell = a["candidates"]["logme"]
    assert cell["above_floor"]["estimate"] == pytest.approx(
        cell["regret"]["estimate"] - a["noise_floor"]["estimate"])
    # Shared wins add up to the tasks; the shares of resamples to one.
    assert sum(x["wins"] for x in a["candidates"].values()) == pytest.approx(10)
    assert sum(x["lowest_share_two_way"] for x in a["candidates"].values()) == pytest.approx(1)


def test_leave_one_out_is_named_in_sample_when_every_fold_chose_the_same(reread):
    rows = study_rows({"ntps": lambda m, a, rng: a.copy()})
    lodo = reread["lodo_rule_b"](rows)
    assert {f["choice"] for f in lodo["folds"].values()} == {"ntps"}
    assert lodo["kind"] == "in-sample" and "not a held-out estimate" in lodo["label"]
    assert lodo["mean"]["estimate"] == pytest.approx(lodo["in_sample"])
    folds = {"folds": {"a": {"choice": "x", "value": 1.0}, "b": {"choice": "y", "value": 2.0}},
             "mean": task_interval([1.0, 2.0])}
    named = reread["named"](folds, 1.0)
    assert named["kind"] == "held-out" and "x, y" in named["label"]


def test_a_dry_run_writes_the_page_and_the_json(reread, tmp_path):
    rows = study_rows({"logme": lambda m, a, rng: a + 0.01 * rng.normal(size=a.size)},
                      models=("SmolLM2-135M", "all-MiniLM-L6-v2", "all-mpnet-base-v2"),
                      n_datasets=4, n_layers=4)
    write_rows(rows, tmp_path / "rows")
    assert reread["main"](["--rows", str(tmp_path / "rows"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "reread.md").read_text()
    for title in ("## 1. Per model", "### SmolLM2-135M (the study's only decoder)",
                  "## 2. All tasks, two-way", "## 3. Choosing among models: rule M",
                  "## 4. Leave one data set out", "## For the README"):
        assert title in page
    assert "Rule A (the NTPS defaults): not computed" in page
    data = json.loads((tmp_path / "out" / "reread.json").read_text())
    prov = data["provenance"]
    assert len(prov["commit"]) == 40 and len(prov["diff_sha256"]) == 64
    assert prov["output"] is None  # a folder outside the repository
    assert data["choosing_models"]["rule"]["default"] in SCORE_COLUMNS
    assert data["population"]["tasks"] == 12 and data["all_tasks"]["noise_floor"]["df"] == 2
    assert data["protocol"]["n_boot"] == 2000 and data["protocol"]["seed"] == 0


def test_rule_a_leave_one_out_runs_where_its_columns_and_stability_exist(reread, tmp_path):
    study = runpy.run_path(str(DOCS / "validity_study.py"))
    names = [study["config_name"](**c) for c in study["configs"]()]
    rows = study_rows({}, n_datasets=3, n_layers=4, n_replicates=2)
    rng = np.random.default_rng(1)
    for r in rows:  # the current defaults follow the probe; every other configuration is noise
        for n in names:
            r[n] = r["probe_accuracy"] if n == "whitened|c=0|s=none|k=0.25" else rng.normal()
    lodo = reread["lodo_rule_a"](rows, dict.fromkeys(names, 0.0))
    assert lodo["available"] and lodo["kind"] == "in-sample"
    assert {f["choice"] for f in lodo["folds"].values()} == {"whitened|c=0|s=none|k=0.25"}
    assert lodo["mean"]["estimate"] == pytest.approx(1.0)
    assert not reread["lodo_rule_a"](rows, None)["available"]
