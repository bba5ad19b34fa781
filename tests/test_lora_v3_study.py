"""LoRA study v3 (docs/lora_v3_study.py, docs/lora_v3_tables.py): the task rule and the
analysis on known answers, and a dry run of the whole pipeline on a tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest

from builders import docs_module, run_docs_script


@pytest.fixture(scope="module")
def study():
    yield from run_docs_script("lora_v3_study.py")


@pytest.fixture(scope="module")
def tables():
    return docs_module("lora_v3_tables")


def test_the_plan_has_24_tasks_from_10_sources_at_1000_texts(study):
    plan = study["PLAN"]
    assert len(plan["sources"]) == 10
    assert sum(max(n, 1) for n in plan["sources"].values()) == 24
    assert plan["n_train"] == 1000 and plan["models"][0] == "all-MiniLM-L6-v2"


def test_groups_are_dealt_from_a_seeded_permutation(study):
    import zlib

    groups = study["deal_groups"](10, 3, "src")
    order = np.random.default_rng([0, zlib.crc32(b"src")]).permutation(10)
    assert groups == [sorted(order[:3]), sorted(order[3:6]), sorted(order[6:9])]
    assert study["deal_groups"](4, 0, "src") == [[0, 1, 2, 3]]
    assert study["deal_groups"](10, 3, "other") != groups  # each source its own draw


def rows(rhos, n_per=3, arm="real", seed=0):
    """Rows of a fake study: per source, NTPS and gain with a known order."""
    rng = np.random.default_rng(seed)
    out = []
    for s, sign in enumerate(rhos):
        for t in range(n_per):
            ntps = rng.normal()
            out.append({"task": f"s{s}-t{t}", "source": f"s{s}", "model": "m", "arm": arm,
                        "ntps": ntps, "ntps_minus_chance": ntps - 0.1, "logme": rng.normal(),
                        "knn": rng.normal(), "ridge_loo": rng.normal(),
                        "headroom": rng.uniform(), "gain": sign * ntps,
                        "ntps_chance": ntps - 0.1, "mcnemar_p": 0.01, "ntps_test_after": 0.5,
                        "ntps_rise": 0.1, "ntps_after_h0": 0.5, "ntps_after_h1": 0.5,
                        "start_accuracy": 0.5, "lora_accuracy": 0.6})
    return out


def test_a_perfect_negative_relation_is_detected_in_the_papers_direction(tables):
    s = tables.summarise(rows([-1] * 6))
    assert s["primary"]["estimate"] == pytest.approx(-1.0)
    assert s["primary"]["high"] < 0 and s["verdict"] == "detected, the paper's direction"
    assert s["primary"]["n_clusters"] == 6


def test_no_relation_is_not_detected(tables):
    s = tables.summarise(rows([1, -1, 1, -1, 1, -1], n_per=4))
    assert s["primary"]["low"] < 0 < s["primary"]["high"]
    assert s["verdict"].startswith("not detected")


def test_the_rise_is_claimed_only_beyond_the_shuffled_lora(tables):
    real = rows([-1] * 4)
    shuffled = [dict(r, arm="shuffled", ntps_test_after=0.45, ntps_after_h0=0.45,
                     ntps_after_h1=0.55) for r in real]
    out = tables.rise_control(real, shuffled)
    assert out["mean_d"]["estimate"] == pytest.approx(0.05)
    assert out["n_claimed"] == 0  # one half's D is below 0
    assert out["n_real_rise_only"] == len(real)
    shuffled = [dict(r, ntps_after_h1=0.45) for r in shuffled]
    assert tables.rise_control(real, shuffled)["n_claimed"] == len(real)


def test_a_dry_run_writes_rows_both_arms_and_tables(study, tiny_llama, tmp_path, capsys):
    study["main"](["--smoke", tiny_llama, "--out", str(tmp_path), "--workers", "1"])
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert list(tasks) == ["banking77-g0", "banking77-g1", "sms_spam"]
    assert all(len(t["train"]) == 40 and len(t["test"]) == 20 for t in tasks.values())
    assert not set(tasks["banking77-g0"]["classes"]) & set(tasks["banking77-g1"]["classes"])
    name = Path(tiny_llama).name
    assert sorted(p.name for p in (tmp_path / "rows").glob("*.csv")) == sorted(
        f"{t}__{name}__{a}.csv" for t in tasks for a in ("real", "shuffled"))
    found = study["read_rows"](tmp_path)
    for r in found:
        assert r["gain"] == pytest.approx(100 * (r["lora_accuracy"] - r["start_accuracy"]))
    preds = np.load(tmp_path / "rows" / f"sms_spam__{name}__real.npz", allow_pickle=True)
    assert preds["lora"].shape == preds["start"].shape == preds["y_test"].shape == (20,)
    meta = json.loads((tmp_path / "rows" / f"sms_spam__{name}__real.json").read_text())
    assert len(meta["provenance"]["commit"]) == 40 and len(meta["texts_sha256"]) == 64
    text = (tmp_path / "tables.md").read_text()
    assert "**Primary**: Spearman(NTPS, gain)" in text
    # A second run finds every row written and runs no job again.
    capsys.readouterr()
    study["main"](["--smoke", tiny_llama, "--out", str(tmp_path), "--workers", "1"])
    assert "[1/" not in capsys.readouterr().out
    assert (tmp_path / "tables.md").read_text() == text
