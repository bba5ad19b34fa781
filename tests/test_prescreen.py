"""LoRA prescreening: the recommendation rule, the command, and (with peft) a run end to end."""

import json

import numpy as np
import pytest

from sklearn_ntps.lora.prescreen import (
    RULE,
    WORTH_IT_POINTS,
    Prescreen,
    intent_subtasks,
    read_score,
    recommend,
    rule_text,
    spearman_power,
)

from builders import LABELS, TEXTS


def rule(predictor="logme", **changes):
    """A rule as rule_from_study() writes it: gain = 10 - 20 x predictor points."""
    return {"predictor": predictor, "intercept": 10.0, "slope": -20.0, "mae": 1.5,
            "headroom_mae": 2.5, "mean_gain_mae": 3.0, "beats_headroom": predictor != "headroom",
            "beats_mean_gain": True,
            "difference_from_headroom": {"estimate": -1.0, "low": -1.8, "high": -0.2},
            "n_rows": 20, "n_tasks": 11, "models": ["a", "b"], "gain_median": 1.2,
            "gain_min": -3.4, "gain_max": 7.5, **changes}


def prescreen(slope=-20.0, noise=0.0, n=13, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w = rng.uniform(0.2, 0.9)
        rows.append({"task": f"t{i}", "ntps": w, "ntps_after": w + 0.05, "logme": -w,
                     "knn": 0.5, "ridge_loo": 0.5, "headroom": 0.3, "probe_accuracy": 0.7,
                     "lora_accuracy": 0.7, "gain": 10 + slope * w + noise * rng.normal(),
                     "recommendation": "", "predicted_gain": None})
    return Prescreen("m", rows=rows, rule=rule())


def test_recommend_reads_only_the_rules_predictor_through_its_line():
    scores = {"ntps": 0.9, "logme": 0.3, "knn": 0.9, "ridge_loo": 0.9, "headroom": 0.0}
    assert recommend(scores, rule()) == ("LoRA likely worth it", pytest.approx(4.0))
    assert recommend({**scores, "ntps": 0.0, "knn": 0.0}, rule()) == recommend(scores, rule())
    label, gain = recommend({**scores, "logme": 0.45}, rule())
    assert label == "LoRA likely not worth it" and gain == pytest.approx(1.0)
    assert gain < WORTH_IT_POINTS
    label, gain = recommend({**scores, "logme": (10 - WORTH_IT_POINTS) / 20}, rule())
    assert label == "LoRA likely worth it"  # from 2 points on
    assert recommend(scores, rule("headroom"))[1] == pytest.approx(10.0)
    with pytest.raises(KeyError):
        recommend({"ntps": 0.5}, rule())


def test_each_outcome_of_the_study_is_said_as_the_protocol_words_it():
    text = rule_text(rule())
    assert "logme predicted the gain best" in text and "error 1.5 points" in text
    assert "1.0 [0.2, 1.8] points less than headroom's" in text
    assert "gain = +10.0 -20.0 x logme points" in text and "11 tasks, 20 (task, model)" in text
    text = rule_text(rule("headroom"))
    assert "no score of the frozen model (NTPS or a peer) predicted the gain better than " \
        "headroom" in text and "NTPS is printed for information" in text
    nothing = rule(beats_mean_gain=False)
    assert recommend({"logme": 0.0}, nothing) == ("no recommendation", None)
    assert read_score(nothing) is None and read_score(None) is None
    assert read_score(rule()) == "logme"
    text = rule_text(nothing)
    assert "beat the mean gain of the other tasks" in text and "nothing is recommended" in text
    assert "median +1.2 points, from -3.4 to +7.5" in text and "without --no-lora" in text
    # A rule dict without the study's sizes or NTPS's Spearman claims neither.
    assert "training texts per task" not in text and "Spearman" not in text
    assert recommend({"logme": 0.0}, None) == ("no recommendation", None)
    assert "No fitted rule" in rule_text(None)


def test_spearman_interval_and_outputs():
    result = prescreen(noise=0.5)
    rho = result.spearman("ntps")
    assert rho["n_tasks"] == 13 and rho["low"] <= rho["estimate"] <= rho["high"] < 0
    assert result.spearman("logme")["estimate"] == pytest.approx(-rho["estimate"])
    data = json.loads(result.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert data["spearman"]["ntps"]["estimate"] == pytest.approx(rho["estimate"])
    assert set(data["spearman"]) == {"ntps", "logme", "knn", "ridge_loo", "headroom"}
    assert result.to_csv().splitlines()[0].startswith("task,ntps,ntps_after,logme")
    text = result.to_text()
    assert "Spearman(ntps, gain) over these 13 tasks" in text
    assert "Spearman(logme, gain)" in text and rule_text(result.rule) in text
    from sklearn_ntps.lora.prescreen import plot_prescreen

    assert plot_prescreen(result).startswith(b"\x89PNG")
    result.rule = None
    assert plot_prescreen(result).startswith(b"\x89PNG")


def test_the_text_shows_the_score_the_rule_reads():
    result = prescreen(n=3)
    header = result.to_text().splitlines()[1].split()
    assert header[:6] == ["task", "NTPS", "after", "logme", "probe", "pred."]
    assert "Spearman(logme, gain) omitted: 3 tasks, 4 needed" in result.to_text()
    result.rule = rule("ntps")
    assert result.to_text().splitlines()[1].split()[:5] == ["task", "NTPS", "after", "probe",
                                                            "pred."]
    assert "Spearman(logme" not in result.to_text()


@pytest.mark.parametrize("fallback", [RULE, rule(beats_mean_gain=False), None])
def test_no_score_is_shown_as_read_when_the_rule_reads_none(fallback):
    # The bundled rule names headroom as its best predictor, but headroom did not beat the
    # mean gain: the recommendation reads no score, so neither headroom nor a predicted gain
    # is shown as what it rests on.
    result = prescreen()
    result.rule = fallback
    text = result.to_text()
    assert text.splitlines()[1].split() == ["task", "NTPS", "after", "probe", "start", "LoRA",
                                            "gain", "recommendation"]
    assert "Spearman(ntps, gain) over these 13 tasks" in text
    assert "Spearman(headroom" not in text and "Spearman(logme" not in text
    assert "pred." not in text and "predicts" not in text


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_spearman_under_four_tasks(n):
    result = prescreen(n=n)
    rho = result.spearman("ntps")
    assert rho["n_tasks"] == n and np.isnan(rho["estimate"]) and np.isnan(rho["low"])
    text = result.to_text()
    task_s = "task" if n == 1 else "tasks"
    assert f"Spearman(ntps, gain) omitted: {n} {task_s}, 4 needed" in text
    assert f"Spearman(logme, gain) omitted: {n} {task_s}, 4 needed" in text
    assert "over these" not in text
    assert json.loads(result.to_json())["spearman"]["ntps"]["estimate"] is None
    if n == 3:
        from sklearn_ntps.lora.prescreen import plot_prescreen

        result.rule = RULE
        assert plot_prescreen(result).startswith(b"\x89PNG")


def test_spearman_from_four_tasks_and_none_without_gains():
    # gain = 10 - 20 x NTPS exactly: rank correlation -1 from the fourth task on.
    result = prescreen(n=4)
    assert "Spearman(ntps, gain) over these 4 tasks: -1.00 " in result.to_text()
    assert "Spearman(logme, gain) over these 4 tasks: +1.00 " in result.to_text()
    for r in result.rows:  # --no-lora: no gain, no line at all
        del r["gain"]
    assert "gain) over these" not in result.to_text() and "omitted" not in result.to_text()


def test_the_studys_gains_are_at_its_own_training_sizes():
    import csv
    from pathlib import Path

    rows = [row for f in sorted((Path(__file__).parents[1] / "docs/lora_v2/rows").glob("*.csv"))
            for row in csv.DictReader(f.read_text().splitlines())]
    sizes = sorted({int(r["n_train"]) for r in rows if r["eligible"] == "1"})
    assert len(rows) == 24 and sizes == RULE["n_train"] == [100, 300]
    assert "The study's gains, at n = 100 or 300 training texts per task: median +0.7" \
        in rule_text(RULE)
    result = prescreen(n=2)
    result.rule = RULE
    for r, n in zip(result.rows, (60, 500)):
        r["n_train"] = n
    assert result.to_text().splitlines()[-1] == (
        "This run: 60 or 500 training texts per task. The study's gains were measured at 100 "
        "or 300 and are not a forecast for these tasks or sizes.")
    result.rule = rule()  # a rule without recorded sizes: no such line
    assert "This run:" not in result.to_text()


def test_power_of_a_spearman_test_matches_a_simulation():
    from scipy.stats import rankdata
    from scipy.stats import t as student_t

    assert spearman_power(0.0, 20) == pytest.approx(0.05)
    assert spearman_power(-0.40, 20) == pytest.approx(0.396, abs=0.005)  # study v2's 20 rows
    assert spearman_power(-0.40, 20) < spearman_power(-0.65, 20) < spearman_power(-0.65, 40)
    # Jointly normal with Pearson r = 2 sin(pi rho / 6) has Spearman rho.
    rho, n, reps = -0.40, 20, 4000
    r = 2 * np.sin(np.pi * rho / 6)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((reps, n, 2))
    x, y = z[..., 0], r * z[..., 0] + np.sqrt(1 - r**2) * z[..., 1]
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    rs = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    t = rs * np.sqrt((n - 2) / (1 - rs**2))
    simulated = np.mean(np.abs(t) > student_t.ppf(0.975, n - 2))
    # the simulation's own sd is about 0.008
    assert spearman_power(rho, n) == pytest.approx(simulated, abs=0.03)


def test_spearman_with_noise_finds_the_correlation_built_in():
    # NTPS and gain jointly normal with correlation r: Spearman's rho is then
    # (6 / pi) asin(r / 2).
    r, n, sd_x, sd_g = -0.6, 200, 0.1, 5.0
    rng = np.random.default_rng(1)
    x, g = rng.multivariate_normal([0.6, 2.0], [[sd_x**2, r * sd_x * sd_g],
                                                [r * sd_x * sd_g, sd_g**2]], size=n).T
    unrelated = rng.uniform(0.2, 0.9, size=n)
    rows = [{"task": f"t{i}", "ntps": x[i], "logme": unrelated[i], "gain": g[i]}
            for i in range(n)]
    result = Prescreen("m", rows=rows)
    rho_true = 6 / np.pi * np.arcsin(r / 2)  # -0.582
    rho = result.spearman("ntps")
    se = (1 - rho_true**2) / np.sqrt(n)  # about 0.047
    assert abs(rho["estimate"] - rho_true) < 3 * se and rho["estimate"] > -0.9
    assert rho["low"] < rho_true < rho["high"] < 0
    assert 0.1 < rho["high"] - rho["low"] < 0.4  # the noise shows in the interval
    other = result.spearman("logme")
    assert other["low"] < 0 < other["high"]


def test_the_interval_is_t_on_the_bootstrap_standard_error():
    from scipy.stats import t as student_t

    from sklearn_ntps.evidence.study import spearman

    result = prescreen(noise=8.0, n=6)
    x = np.array([r["ntps"] for r in result.rows])
    g = np.array([r["gain"] for r in result.rows])
    draws = np.random.default_rng(0).integers(0, 6, (2000, 6))
    boot = np.array([spearman(x[i], g[i]) for i in draws])
    half = student_t.ppf(0.975, 5) * boot[np.isfinite(boot)].std(ddof=1)
    rho = result.spearman("ntps")
    assert rho["low"] == pytest.approx(max(rho["estimate"] - half, -1))
    assert rho["high"] == pytest.approx(min(rho["estimate"] + half, 1))
    assert half > 1.96 * boot[np.isfinite(boot)].std(ddof=1)  # wider than the normal's


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
    from sklearn_ntps import cli, ntps_score
    from sklearn_ntps.choice.protocol import on_probe_footing
    from sklearn_ntps.lora import prescreen

    seen = []  # the moments and labels each task's scores are computed from

    def spy(moments, y, names, n_permutations):
        seen.append((moments, np.asarray(y)))
        return scores(moments, y, names, n_permutations)

    scores = prescreen._scores
    monkeypatch.setattr(prescreen, "_scores", spy)
    out = tmp_path / "pre"
    status = cli.main(["lora-prescreen", "--model", tiny_llama, "--dataset", "sms_spam",
                       "--dataset", "trec", "--n-train", "60", "--n-test", "30", "--no-lora",
                       "--output-dir", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert prescreen.rule_text(prescreen.RULE) in printed
    # No gain measured: no correlation; the rule reads no score: no headroom or pred. column
    assert "Spearman(ntps, gain)" not in printed and "omitted" not in printed
    assert printed.splitlines()[1].split() == ["task", "NTPS", "after", "probe", "start", "LoRA",
                                               "gain", "recommendation"]
    assert "This run: 60 training texts per task. The study's gains were measured at 100 or " \
        "300" in printed
    data = json.loads((out / "prescreen.json").read_text())
    assert [r["task"] for r in data["rows"]] == ["sms_spam", "trec"]
    assert [r["n_train"] for r in data["rows"]] == [60, 60] and len(seen) == 2
    for row, (moments, y) in zip(data["rows"], seen):
        assert len(moments) == len(y) == 60
        # the study's footing: every feature divided by its sd over the training texts
        footed, scale = on_probe_footing([moments])
        assert row["ntps"] == pytest.approx(ntps_score(footed, y), abs=1e-12)
        assert np.isfinite(row["ntps_chance"]) and row["ntps_chance_std"] > 0
        assert not np.allclose(scale, 1)
        assert row["headroom"] == pytest.approx(1 - row["probe_accuracy"])
        assert {"logme", "knn", "ridge_loo"} <= row.keys() and "gain" not in row
        label, gain = prescreen.recommend(row)
        assert row["recommendation"] == label and row["predicted_gain"] == gain


def test_ntps_after_lora_in_one_line_equals_the_merged_weights(tiny_llama, ntps_cache):
    pytest.importorskip("peft")
    from sklearn.frozen import FrozenEstimator

    from sklearn_ntps import HFEmbeddingTransformer, HFLoRAClassifier, NTPSScorer
    from sklearn_ntps.states.extraction import extract_statistics

    texts, labels = TEXTS * 3, LABELS * 3
    lora = HFLoRAClassifier(model_name_or_path=tiny_llama, r=4, max_steps=6, batch_size=4,
                            learning_rate=5e-2, n_iter_no_change=None, random_state=0,
                            progress=False).fit(texts, labels)
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


def _spy_max_lengths(monkeypatch):
    """Every max_length the texts are tokenized with, by NTPS and the probe (extraction) and
    by LoRA."""
    from sklearn_ntps.lora import adapters as lora
    from sklearn_ntps.states import extraction

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
    from sklearn_ntps.lora.prescreen import run_prescreen

    seen = _spy_max_lengths(monkeypatch)
    tasks = {"t": (TEXTS * 3, LABELS * 3, TEXTS, LABELS)}
    lora = {"r": 4, "max_steps": 2, "batch_size": 4, "random_state": 0}
    result = run_prescreen(tiny_llama, tasks, lora_params=lora, progress=False)
    # NTPS before, the probe (training and test texts), LoRA's fit and score, NTPS after
    assert len(seen) >= 5 and set(seen) == {128}
    row = result.rows[0]
    assert row["gain"] == pytest.approx(100 * (row["lora_accuracy"] - row["probe_accuracy"]))
    # An accuracy over the test texts: a whole number of them right.
    right = row["lora_accuracy"] * row["n_test"]
    assert right == pytest.approx(round(right)) and row["lora_fit_seconds"] > 0
    assert row["ntps_rise"] == pytest.approx(row["ntps_after"] - row["ntps"])
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
    from sklearn_ntps.lora.prescreen import RULE

    assert rule_text(RULE) in printed
    assert "Spearman(ntps, gain) omitted: 1 task, 4 needed" in printed
    assert "Spearman(headroom" not in printed and "This run: 40 training texts" in printed
    data = json.loads((out / "prescreen.json").read_text())
    row = data["rows"][0]
    assert row["task"] == "trec" and row["n_train"] == 40 and row["n_test"] == 20
    assert row["gain"] == pytest.approx(100 * (row["lora_accuracy"] - row["probe_accuracy"]))
    assert (out / "prescreen.png").read_bytes().startswith(b"\x89PNG")


def test_command_on_your_own_data(tiny_llama, ntps_cache, tmp_path, capsys):
    pytest.importorskip("torch")
    from test_cli import write_texts

    from sklearn_ntps import cli

    data = write_texts(tmp_path / "mine.csv", n=60)
    out = tmp_path / "pre"
    common = ["lora-prescreen", "--model", tiny_llama, "--no-lora", "--no-progress",
              "--no-plot", "--output-dir", str(out)]
    assert cli.main([*common, "--data", str(data)]) == 0
    row, = json.loads((out / "prescreen.json").read_text())["rows"]
    assert row["task"] == "mine.csv" and (row["n_train"], row["n_test"]) == (48, 12)
    test = write_texts(tmp_path / "test.jsonl", n=20, seed=1)
    assert cli.main([*common, "--data", str(data), "--test-data", str(test),
                     "--n-train", "30"]) == 0
    row, = json.loads((out / "prescreen.json").read_text())["rows"]
    assert (row["n_train"], row["n_test"]) == (30, 20)
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--test-data", "t.csv"], "--test-data needs --data"),
    (["--data", "DATA", "--label-column", "intent"], "intent"),
])
def test_command_data_errors_leave_no_folder(tiny_llama, tmp_path, capsys, args, message):
    from test_cli import write_texts

    from sklearn_ntps import cli

    data = str(write_texts(tmp_path / "d.csv"))
    out = tmp_path / "out"
    args = [data if a == "DATA" else a for a in args]
    assert cli.main(["lora-prescreen", "--model", tiny_llama, "--no-lora", *args,
                     "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sklearn-ntps: error: ") and message in err
    assert not out.exists()


def test_the_bundled_rule_is_the_studys_and_says_it_predicts_nothing():
    from pathlib import Path

    from sklearn_ntps.lora.prescreen import RULE, rule_from_study

    data = json.loads((Path(__file__).parents[1] / "docs/lora_v2/study.json").read_text())
    refit = rule_from_study(data)
    assert refit.keys() == RULE.keys()
    for key, value in RULE.items():
        if isinstance(value, dict):
            assert refit[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        else:
            assert refit[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float)
                                  else value), key
    assert not RULE["beats_mean_gain"] and RULE["mae"] > RULE["mean_gain_mae"]
    assert recommend({"ntps": 0.9, "headroom": 0.3}) == ("no recommendation", None)
    text = rule_text(RULE)
    assert "12 tasks, 20 (task, model) rows" in text
    assert "no predictor (NTPS, the peers or headroom) beat the mean gain of the other tasks " \
        "when each task was left out (the best, headroom, missed by 4.0 points" in text
    assert "median +0.7 points, from -5.1 to +16.4" in text
    assert "Spearman(NTPS, gain) was -0.16 [-0.83, +0.51] (p = 0.49): the study could not " \
        "detect whether NTPS relates to the gain" in text
    assert "with 20 rows it would have detected the paper's weakest, -0.40, with a " \
        "probability of about 0.40" in text
    assert "predicts" not in text and "negative" not in text


def test_study_v3_constants_are_the_committed_study():
    from pathlib import Path

    from sklearn_ntps.lora.prescreen import STUDY_V3, study_v3_from

    data = json.loads((Path(__file__).parents[1] / "docs" / "lora_v3" / "study.json").read_text())
    assert study_v3_from(data) == STUDY_V3
    assert data["verdict"] == "not detected" and STUDY_V3["low"] <= -0.40 <= STUDY_V3["high"]


@pytest.mark.parametrize(("low", "high", "says"), [
    (-0.9, -0.3, "tasks with a higher NTPS gained less from LoRA"),
    (0.1, 0.8, "gained more, the opposite of the paper"),
    (-0.3, 0.4, "found no relation of the paper's size"),
    (-0.97, 0.23, "could not detect a relation between NTPS and LoRA's gain"),
])
def test_what_the_command_says_of_study_v3_follows_the_registered_rule(low, high, says):
    from sklearn_ntps.lora.prescreen import STUDY_V3, study_v3_text

    text = study_v3_text({**STUDY_V3, "estimate": (low + high) / 2, "low": low, "high": high})
    assert says in text and "predicts" not in text
    assert "median +0.2 points, from -3.5 to +9.0" in text
    assert ("0.69 or more with 80% power" in text) == (says.startswith("could not"))
    assert study_v3_text() in prescreen().to_text()
