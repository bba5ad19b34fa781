"""The validity study's own code (docs/validity_study.py): its columns and a dry run."""

import json
from pathlib import Path

import numpy as np
import pytest

from sklearn_ntps import NTPSScorer
from sklearn_ntps.scores.registry import default_scorers

from builders import docs_module, make_texts, run_docs_script

DOCS = Path(__file__).parent.parent / "docs"


@pytest.fixture(scope="module")
def study():
    yield from run_docs_script("validity_study.py")


def test_the_report_columns_taken_from_the_grid_are_the_scorers(study):
    from sklearn_ntps.states.moments import compute_moments

    X, y = make_texts(n_texts=80, n_features=12, seed=3)
    moments = compute_moments(X)
    row = study["ntps_columns"](moments, y)
    scorers = default_scorers()
    for column in ("ntps", "ntps_paper", "ntps_paper_exact"):
        assert row[column] == scorers[column].fit(moments, y).score_, column
    assert row[study["config_name"]("whitened", True, "ledoit-wolf", 0.5)] == NTPSScorer(
        centering=True, shrinkage="ledoit-wolf", n_components=0.5).fit(moments, y).score_
    assert len([c for c in row if "|c=" in c]) == 32
    assert set(study["scorers"]()) == set(scorers) - {"ntps", "ntps_paper", "ntps_paper_exact"}


def test_a_dry_run_writes_every_table(study, tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(study["POOL"], "n_texts", 200)
    study["main"](["--smoke", tiny_llama, "--out", str(tmp_path), "--workers", "1"])
    tables = (tmp_path / "tables.md").read_text()
    for title in ("## Population", "## Rule A", "## Rule B", "## Every score on every axis",
                  "## The paper's protocol"):
        assert title in tables
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["rule_b"]["pick"] in [*default_scorers(), "last layer", "layer at 2/3 depth"]
    meta = json.loads(next((tmp_path / "rows").glob("*.json")).read_text())
    assert len(meta["provenance"]["commit"]) == 40
    assert sorted(p.name for p in (tmp_path / "rows").glob("*.csv")) == [
        f"{d}__{Path(tiny_llama).name}.csv" for d in ("banking77", "sms_spam", "trec")]
    rows = study["read_rows"](tmp_path)
    assert np.isfinite([r["probe_accuracy"] for r in rows]).all()


def test_the_product_follows_the_stored_study(study):
    from sklearn_ntps.choice import protocol as report

    data = json.loads((DOCS / "validity" / "study.json").read_text())
    assert report.RECOMMENDED == data["rule_b"]["pick"]
    assert set(report.NOT_SEPARATED) == set(data["rule_b"]["not_separated_from"])
    defaults = NTPSScorer().get_params()
    assert study["config_name"](defaults["variant"], defaults["centering"], defaults["shrinkage"],
                                defaults["n_components"]) == data["rule_a"]["winner"]


def test_the_product_follows_the_re_read():
    from sklearn_ntps.choice import protocol as scorers

    data = json.loads((DOCS / "validity" / "reread.json").read_text())
    rule = data["choosing_models"]["rule"]
    assert scorers.MODEL_CHOICE == rule["default"]
    assert scorers.MODEL_CHOICE_TIED == tuple(rule["tied"])
    floor = data["all_tasks"]["noise_floor"]["estimate"]
    assert scorers.NOISE_FLOOR == pytest.approx(floor, abs=0.05)
    for name, (estimate, low, high) in scorers.LAYER_REGRET.items():
        cell = data["all_tasks"]["candidates"][name]["regret"]
        assert (estimate, low, high) == pytest.approx(
            (cell["estimate"], cell["low"], cell["high"]), abs=0.05), name


def test_the_tables_are_what_the_stored_rows_give(tmp_path):
    import shutil

    write_tables = docs_module("validity_tables").write_tables
    shutil.copytree(DOCS / "validity" / "rows", tmp_path / "rows")
    shutil.copy(DOCS / "validity" / "stability.json", tmp_path)
    write_tables(tmp_path)
    assert (tmp_path / "tables.md").read_text() == (DOCS / "validity" / "tables.md").read_text()
