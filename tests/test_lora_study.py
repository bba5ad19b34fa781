"""The LoRA prescreening study v2 (docs/lora_study.py, docs/lora_tables.py): its analysis on
inputs with known answers, and a dry run of the whole pipeline on a tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

from builders import docs_module, run_docs_script


@pytest.fixture(scope="module")
def study():
    yield from run_docs_script("lora_study.py")


@pytest.fixture(scope="module")
def tables():
    return docs_module("lora_tables")


def test_partial_spearman_is_the_textbook_formula(tables):
    x, y, z = [1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6], [2, 1, 4, 3, 6, 5]
    # By hand, Spearman = 1 - 6 sum d^2 / (n (n^2 - 1)): r_xy = 31/35, r_xz = 29/35,
    # r_yz = 17/35, so the partial is (31 * 35 - 29 * 17) / sqrt((35^2 - 29^2)(35^2 - 17^2))
    # = 592 / sqrt(384 * 936).
    assert tables.partial_spearman(x, y, z) == pytest.approx(592 / np.sqrt(384 * 936), abs=1e-12)
    # Monotone transforms change nothing; z that is x leaves nothing to correlate.
    assert tables.partial_spearman(np.exp(x), np.square(y), z) == pytest.approx(
        592 / np.sqrt(384 * 936), abs=1e-12)
    assert np.isnan(tables.partial_spearman(x, y, x))
    assert np.isnan(tables.partial_spearman(x[:3], y[:3], z[:3]))


def test_permutation_p_values(tables):
    # n = 4, x = y: 2 of the 24 orders give |rho| = 1, so p is 1/12 up to Monte Carlo error.
    p = tables.permutation_p([1, 2, 3, 4], [1, 2, 3, 4])
    assert abs(p - 1 / 12) < 0.01
    assert p == tables.permutation_p([1, 2, 3, 4], [1, 2, 3, 4])  # seeded
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=30), rng.normal(size=30)
    assert tables.permutation_p(x, x + 0.1 * rng.normal(size=30), z) == pytest.approx(1 / 10_001)
    assert tables.permutation_p(x, rng.normal(size=30), z) > 0.05
    assert np.isnan(tables.permutation_p(x, np.ones(30)))


def test_the_clustered_bootstrap_resamples_whole_sources(tables):
    sizes = {"a": 2, "b": 3, "c": 1, "d": 4}
    rows = [{"source": s, "value": float(i)} for i, (s, n) in enumerate(sizes.items())
            for _ in range(n)]
    seen = []

    def statistic(rs):
        counts = {s: sum(r["source"] == s for r in rs) for s in sizes}
        seen.append(counts)
        return float(np.mean([r["value"] for r in rs]))

    cell = tables.cluster_bootstrap(rows, statistic, n_boot=300)
    assert len(seen) == 301 and cell["n_clusters"] == 4 and cell["n_valid"] == 300
    for counts in seen[1:]:
        assert all(counts[s] % n == 0 for s, n in sizes.items())  # whole sources only
        assert sum(counts[s] // n for s, n in sizes.items()) == 4  # four draws
    assert cell["estimate"] == pytest.approx(np.mean([r["value"] for r in rows]))
    q = student_t.ppf(0.975, 3)  # t with (sources - 1) df on the bootstrap SE
    assert cell["low"] == pytest.approx(cell["estimate"] - q * cell["se"])
    assert cell["high"] == pytest.approx(cell["estimate"] + q * cell["se"])
    assert cell["pct_low"] <= cell["estimate"] <= cell["pct_high"]
    clipped = tables.cluster_bootstrap(rows, statistic, n_boot=300, bounds=(0.5, 2.5))
    assert clipped["low"] >= 0.5 and clipped["high"] <= 2.5
    one = tables.cluster_bootstrap([r for r in rows if r["source"] == "a"], statistic)
    assert np.isnan(one["low"]) and one["n_clusters"] == 1


def test_leave_one_task_out_and_the_decision(tables):
    rows, rng = [], np.random.default_rng(1)
    for t in range(6):
        for m in range(2):
            x = t + 0.1 * m
            rows.append({"task": f"t{t}", "source": f"s{t % 3}", "ntps": x,
                         "logme": rng.normal(), "knn": rng.normal(), "ridge_loo": rng.normal(),
                         "headroom": rng.normal(), "probe_accuracy": rng.uniform(),
                         "gain": 2.0 - 3.0 * x})
    loto = {p: tables.leave_one_task_out(rows, p) for p in tables.PREDICTORS}
    loto["mean gain"] = tables.leave_one_task_out(rows, None)
    assert loto["ntps"]["mae"] == pytest.approx(0, abs=1e-9)
    # The mean-gain reference for task t0 (x = 0 and 0.1): the others' mean gain is
    # 2 - 3 * mean(1 .. 5.1) = 2 - 3 * 3.05 = -7.15; t0's gains are 2 and 1.7.
    assert loto["mean gain"]["per_task"]["t0"] == pytest.approx((9.15 + 8.85) / 2)
    rule = tables.decide(rows, loto)
    assert rule["predictor"] == "ntps" and rule["beats_headroom"] and rule["beats_mean_gain"]
    assert (rule["intercept"], rule["slope"]) == pytest.approx((2.0, -3.0))
    assert "predict the gain from ntps" in rule["says"]
    # Ties go to headroom: a score must predict strictly better.
    for r in rows:
        r["headroom"] = r["ntps"]
    loto["headroom"] = tables.leave_one_task_out(rows, "headroom")
    assert tables.decide(rows, loto)["predictor"] == "headroom"


def test_the_decision_becomes_what_lora_prescreen_says(tables):
    from sklearn_ntps.lora.prescreen import recommend, rule_from_study, rule_text

    rows = [{"task": f"t{t}", "source": f"s{t % 3}", "model": f"m{m}", "eligible": t != 5,
             "logme": t + 0.1 * m, "ntps": 0.5, "knn": 0.5, "ridge_loo": 0.5,
             "headroom": 0.1 * (t % 2), "probe_accuracy": 0.7, "gain": 1.0 + 2.0 * (t + 0.1 * m)}
            for t in range(6) for m in range(2)]
    eligible = [r for r in rows if r["eligible"]]
    loto = {p: tables.leave_one_task_out(eligible, p) for p in tables.PREDICTORS}
    loto["mean gain"] = tables.leave_one_task_out(eligible, None)
    rule = rule_from_study({"rule": tables.decide(eligible, loto), "rows": rows})
    assert rule["predictor"] == "logme" and rule["n_rows"] == 10 and rule["n_tasks"] == 5
    assert rule["models"] == ["m0", "m1"] and rule["gain_max"] == pytest.approx(9.2)
    assert recommend({"logme": 1.0}, rule) == ("LoRA likely worth it", pytest.approx(3.0))
    assert recommend({"logme": 0.25}, rule) == ("LoRA likely not worth it", pytest.approx(1.5))
    assert "logme predicted the gain best" in rule_text(rule)
    json.dumps(rule)  # it is written into prescreen.json


def test_choose_groups(study):
    centroids = [[1, 0, 0], [0.99, 0.14, 0], [0.9, 0.43, 0], [0, 1, 0.1], [0.1, 1, 0],
                 [0, 0, -1], [0, -0.5, -1]]
    # The closest pair is 0 and 1; the group adds the classes nearest the seed; then again.
    assert study["choose_groups"](centroids, 2, 3) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="need 6 classes"):
        study["choose_groups"](centroids[:5], 2, 3)


def test_a_dry_run_writes_every_table(study, tables, tiny_llama, tmp_path, capsys):
    study["main"](["--smoke", tiny_llama, "--out", str(tmp_path)])
    text = (tmp_path / "tables.md").read_text()
    for title in ("## Run", "## Population", "## Per task and model",
                  "## Correlations with the gain", "## Leave one task out",
                  "## What lora-prescreen will say", "## NTPS after LoRA"):
        assert title in text, title
    groups = json.loads((tmp_path / "groups.json").read_text())["groups"]
    assert list(groups) == ["banking77-g0"] and len(groups["banking77-g0"]) == 5
    name = Path(tiny_llama).name
    assert sorted(p.name for p in (tmp_path / "rows").glob("*.csv")) == [
        f"{t}__{name}.csv" for t in ("banking77-g0", "rotten_tomatoes", "trec")]
    rows = study["read_rows"](tmp_path)
    n_blocks = study["PLAN"]["n_blocks"]
    for r in rows:
        assert set(study["COLUMNS"]) | {f"ntps_{w}_b{i}" for w in ("before", "after")
                                        for i in range(n_blocks)} == set(r)
        assert np.isfinite([v for k, v in r.items() if k not in ("task", "source", "model")]).all()
        assert r["gain"] == pytest.approx(100 * (r["lora_accuracy"] - r["probe_accuracy"]))
    assert {r["n_train"] for r in rows} == {30.0, 20.0}  # trec, rotten_tomatoes, 5 x 6
    data = json.loads((tmp_path / "study.json").read_text())
    assert set(data["correlations"]) == set(tables.PREDICTORS)
    assert (tmp_path / "study.png").read_bytes().startswith(b"\x89PNG")
    assert data["rule"]["predictor"] in tables.PREDICTORS
    assert data["correlations"]["ntps"]["spearman"]["n_clusters"] == 3
    meta = json.loads(next((tmp_path / "rows").glob("*.json")).read_text())
    assert len(meta["provenance"]["commit"]) == 40
    # A second run finds every row written and runs no job again.
    capsys.readouterr()
    study["main"](["--smoke", tiny_llama, "--out", str(tmp_path)])
    assert "[1/" not in capsys.readouterr().out
    assert (tmp_path / "tables.md").read_text() == text
