"""LoRA prescreening: the statistics and rule C, the command, and (with peft) a run end to end."""

import json

import numpy as np
import pytest

from sklearn_ntps.prescreen import (
    WORTH_IT_POINTS,
    Prescreen,
    fit_rule,
    intent_subtasks,
    rule_c,
    rule_text,
)

from builders import LABELS, TEXTS


def study(slope=-0.2, noise=0.0, n=13, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w, p = rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.9)
        rows.append({"task": f"t{i}", "ntps_whitened_before": w, "ntps_paper_before": p,
                     "ntps_whitened_after": w + 0.05, "ntps_paper_after": p,
                     "probe_accuracy": 0.7, "lora_accuracy": 0.7 + 0.1 + slope * w,
                     "gain": 0.1 + slope * w + noise * rng.normal(), "recommendation": ""})
    return Prescreen("m", rows=rows)


def test_rule_c_is_fitted_from_the_study_and_applied():
    rule = fit_rule(study(slope=-0.2))
    assert rule["variant"] == "whitened" and rule["significant"]
    assert rule["slope"] == pytest.approx(-0.2) and rule["intercept"] == pytest.approx(0.1)
    assert rule["rho"] == pytest.approx(-1.0) and rule["high"] < 0
    low, high = rule_c({"whitened": 0.2, "paper": 0.5}, rule), \
        rule_c({"whitened": 0.9, "paper": 0.5}, rule)
    assert low == ("LoRA likely worth it", pytest.approx(100 * (0.1 - 0.04)))
    assert high[0] == "LoRA likely not worth it" and high[1] < WORTH_IT_POINTS
    assert "Spearman(NTPS_whitened, gain) = -1.00" in rule_text(rule)


def test_no_evidence_means_no_recommendation():
    rule = fit_rule(study(slope=0.0, noise=0.05))
    assert not rule["significant"]
    assert rule_c({"whitened": 0.1, "paper": 0.1}, rule) == ("no evidence from NTPS", None)
    assert rule_c({"whitened": 0.1, "paper": 0.1}, None) == ("no evidence from NTPS", None)
    assert "no fitted rule" in rule_text(None) and "no evidence" in rule_text(rule)


def test_spearman_interval_and_outputs():
    result = study(slope=-0.2, noise=0.01)
    rho = result.spearman("whitened")
    assert rho["n_tasks"] == 13 and rho["low"] <= rho["estimate"] <= rho["high"] < 0
    data = json.loads(result.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["spearman"]["whitened"]["estimate"] == pytest.approx(rho["estimate"])
    assert result.to_csv().splitlines()[0].startswith("task,ntps_whitened_before")
    assert "Spearman(NTPS_whitened before, gain) over 13 tasks" in result.to_text()
    from sklearn_ntps.prescreen import plot_prescreen

    assert plot_prescreen(result).startswith(b"\x89PNG")


def test_intent_subtasks_are_disjoint_and_seeded():
    y = np.repeat(np.arange(30), 4)
    X = [f"text {i}" for i in range(len(y))]
    subs = intent_subtasks((X, y, X, y), n_groups=4, group_size=5, seed=0)
    groups = [set(np.unique(s[1])) for s in subs]
    assert len(subs) == 4 and all(len(g) == 5 for g in groups)
    assert len(set.union(*groups)) == 20
    again = intent_subtasks((X, y, X, y), n_groups=4, group_size=5, seed=0)
    assert [set(np.unique(s[1])) for s in again] == groups
    assert all(len(s[0]) == len(s[1]) == 20 for s in subs)
    with pytest.raises(ValueError, match="need 35 classes"):
        intent_subtasks((X, y, X, y), n_groups=7, group_size=5)


def test_command_without_lora(tiny_llama, ntps_cache, tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from sklearn_ntps import cli, ntps_score, prescreen

    seen = []  # the moments and labels each task's NTPS is computed from

    def spy(moments, y, when):
        seen.append((moments, np.asarray(y)))
        return ntps(moments, y, when)

    ntps = prescreen._ntps
    monkeypatch.setattr(prescreen, "_ntps", spy)
    out = tmp_path / "pre"
    status = cli.main(["lora-prescreen", "--model", tiny_llama, "--dataset", "sms_spam",
                       "--dataset", "trec", "--n-train", "60", "--n-test", "30", "--no-lora",
                       "--output-dir", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "no evidence from NTPS" in printed and "Rule C" in printed
    data = json.loads((out / "prescreen.json").read_text())
    assert [r["task"] for r in data["rows"]] == ["sms_spam", "trec"]
    assert [r["n_train"] for r in data["rows"]] == [60, 60] and len(seen) == 2
    for row, (moments, y) in zip(data["rows"], seen):
        assert len(moments) == len(y) == 60
        for variant in ("whitened", "paper"):
            assert row[f"ntps_{variant}_before"] == ntps_score(moments, y, variant=variant)


def test_ntps_after_lora_in_one_line_equals_the_merged_weights(tiny_llama, ntps_cache):
    pytest.importorskip("peft")
    from sklearn.frozen import FrozenEstimator

    from sklearn_ntps import HFEmbeddingTransformer, HFLoRAClassifier, NTPSScorer
    from sklearn_ntps.extraction import extract_statistics

    texts, labels = TEXTS * 3, LABELS * 3
    lora = HFLoRAClassifier(model_name_or_path=tiny_llama, r=4, max_steps=6, batch_size=4,
                            learning_rate=5e-2, random_state=0, progress=False).fit(texts, labels)
    before = HFEmbeddingTransformer(model_name_or_path=tiny_llama, output="tokens",
                                    progress=False).fit_transform(texts)
    after = HFEmbeddingTransformer(model_name_or_path=lora, output="tokens",
                                   progress=False).fit_transform(texts)
    direct = extract_statistics(lora.loaded_model(), texts, progress=False).layer(-1)
    score = lambda m: NTPSScorer(n_components=4).fit(m, labels).ntps_  # noqa: E731
    assert score(after) == pytest.approx(score(direct), abs=1e-9)
    assert score(after) != pytest.approx(score(before), abs=1e-6)
    # Its own cache key: the base model's entry is not served for the fine-tune.
    emb = HFEmbeddingTransformer(model_name_or_path=lora, progress=False).fit()
    assert emb.model_fingerprint_ == lora.loaded_model().resolved.fingerprint
    # Through clone (a grid search), FrozenEstimator keeps the fitted fine-tune.
    from sklearn.base import clone

    frozen = clone(HFEmbeddingTransformer(model_name_or_path=FrozenEstimator(lora),
                                          output="tokens", progress=False))
    assert score(frozen.fit_transform(texts)) == pytest.approx(score(after), abs=1e-9)


def test_the_stored_rule_is_the_bundled_studys_and_says_why_it_recommends_nothing():
    import json
    from pathlib import Path

    from sklearn_ntps.prescreen import RULE_C, Prescreen

    data = json.loads((Path(__file__).parents[1] / "docs/lora/prescreen.json").read_text())
    refit = fit_rule(Prescreen(model=data["model"], rows=data["rows"]))
    assert refit.keys() == RULE_C.keys()
    for key, value in RULE_C.items():
        assert refit[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float)
                              else value), key
    assert rule_c({"whitened": 0.1, "paper": 0.1}) == ("no evidence from NTPS", None)
    assert "[-0.68, +0.34], not below zero" in rule_text(RULE_C)


def test_spearman_and_the_rule_with_noise_find_the_correlation_built_in():
    # NTPS and gain jointly normal with correlation r: Spearman's rho is then
    # (6 / pi) asin(r / 2) and the least-squares slope r sd(gain) / sd(NTPS), exactly.
    r, n, sd_x, sd_g = -0.6, 200, 0.1, 0.05
    rng = np.random.default_rng(1)
    x, g = rng.multivariate_normal([0.6, 0.02], [[sd_x**2, r * sd_x * sd_g],
                                                 [r * sd_x * sd_g, sd_g**2]], size=n).T
    paper = rng.uniform(0.2, 0.9, size=n)  # unrelated to the gain
    rows = [{"task": f"t{i}", "ntps_whitened_before": x[i], "ntps_paper_before": paper[i],
             "gain": g[i]} for i in range(n)]
    result = Prescreen("m", rows=rows)
    rho_true = 6 / np.pi * np.arcsin(r / 2)  # -0.582
    rho = result.spearman("whitened")
    se = (1 - rho_true**2) / np.sqrt(n)  # about 0.047
    assert abs(rho["estimate"] - rho_true) < 3 * se and rho["estimate"] > -0.9
    assert rho["low"] < rho_true < rho["high"] < 0
    assert 0.1 < rho["high"] - rho["low"] < 0.4  # the noise shows in the interval
    unrelated = result.spearman("paper")
    assert unrelated["low"] < 0 < unrelated["high"]
    rule = fit_rule(result)
    assert rule["variant"] == "whitened" and rule["significant"]
    slope_se = sd_g * np.sqrt(1 - r**2) / (sd_x * np.sqrt(n))
    assert abs(rule["slope"] - r * sd_g / sd_x) < 3 * slope_se


def _spy_max_lengths(monkeypatch):
    """Every max_length the texts are tokenized with, by NTPS and the probe (extraction) and
    by LoRA."""
    from sklearn_ntps import extraction, lora

    seen = []

    def encode(loaded, texts, max_length):
        seen.append(max_length)
        return extraction_encode(loaded, texts, max_length)

    extraction_encode = extraction.encode
    monkeypatch.setattr(extraction, "encode", encode)
    monkeypatch.setattr(lora, "encode", encode)
    return seen


def test_run_prescreen_with_lora_one_max_length(tiny_llama, ntps_cache, monkeypatch):
    pytest.importorskip("peft")
    from sklearn_ntps.prescreen import run_prescreen

    seen = _spy_max_lengths(monkeypatch)
    tasks = {"t": (TEXTS * 3, LABELS * 3, TEXTS, LABELS)}
    lora = {"r": 4, "max_steps": 2, "batch_size": 4, "random_state": 0}
    result = run_prescreen(tiny_llama, tasks, lora_params=lora, progress=False)
    # NTPS before, the probe (training and test texts), LoRA's fit and score, NTPS after
    assert len(seen) >= 5 and set(seen) == {128}
    row = result.rows[0]
    assert row["gain"] == pytest.approx(row["lora_accuracy"] - row["probe_accuracy"])
    assert 0 <= row["lora_accuracy"] <= 1 and row["lora_fit_seconds"] > 0
    assert {"ntps_whitened_after", "ntps_paper_after"} <= row.keys()
    seen.clear()
    run_prescreen(tiny_llama, tasks, lora_params=lora, max_length=6, progress=False)
    assert len(seen) >= 5 and set(seen) == {6}
    with pytest.raises(ValueError, match="Pass max_length to run_prescreen itself"):
        run_prescreen(tiny_llama, tasks, lora_params={"max_length": 64}, progress=False)


def test_command_with_lora(tiny_llama, ntps_cache, tmp_path, capsys, monkeypatch):
    pytest.importorskip("peft")
    from sklearn_ntps import cli

    seen = _spy_max_lengths(monkeypatch)
    out = tmp_path / "pre"
    status = cli.main(["lora-prescreen", "--model", tiny_llama, "--dataset", "trec",
                       "--n-train", "40", "--n-test", "20", "--max-steps", "2",
                       "--learning-rate", "0.01", "--max-length", "16", "--output-dir", str(out),
                       "--no-progress"])
    assert status == 0
    assert set(seen) == {16}
    printed = capsys.readouterr().out
    assert "Rule C" in printed
    data = json.loads((out / "prescreen.json").read_text())
    row = data["rows"][0]
    assert row["task"] == "trec" and row["n_train"] == 40 and row["n_test"] == 20
    assert row["gain"] == pytest.approx(row["lora_accuracy"] - row["probe_accuracy"])
    assert (out / "prescreen.png").read_bytes().startswith(b"\x89PNG")
