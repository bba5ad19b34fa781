import csv
import json
import os
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from sklearn_ntps.choice.probe import PROBE_CS, default_probe
from sklearn_ntps.choice.protocol import block_partitions, feature_scale
from sklearn_ntps.evidence import report as report_module
from sklearn_ntps.evidence.report import Report, run_report, save_report
from sklearn_ntps.scores.registry import default_scorers
from sklearn_ntps.splits import stratified_blocks

from builders import TINY_WORDS

rng = np.random.default_rng(0)
WORDS = TINY_WORDS[3:]
TEXTS = [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(60)]
LABELS = [i % 3 for i in range(60)]


def small_report(tiny_llama, **kwargs):
    return run_report([tiny_llama], {"toy": (TEXTS, LABELS)}, progress=False,
                      embedding_params={"batch_size": 4}, n_blocks=5, n_test_blocks=1, **kwargs)


def test_each_cell_is_every_score_refitted_on_its_partition(tiny_llama, ntps_cache):
    rep = small_report(tiny_llama, n_replicates=2)
    assert [(r["layer"], r["replicate"]) for r in rep.rows] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert rep.scores == ["ntps", "ntps_paper", "ntps_paper_exact", "logme", "hscore",
                          "transrate", "rankme", "knn", "ridge_loo"]
    # Rebuild one cell by hand: the same blocks and partition, the rescaled states.
    from sklearn_ntps import HFEmbeddingTransformer, LogMEScorer, NTPSScorer
    from sklearn_ntps.states.statistics import resample_blocks

    seed = np.random.default_rng([0, zlib.crc32(b"toy")])
    blocks = stratified_blocks(LABELS, 5, seed)
    train, test = block_partitions(5, 1, 2, seed)[1]
    emb = HFEmbeddingTransformer(model_name_or_path=tiny_llama, layer=1, output="tokens",
                                 batch_size=4, progress=False).fit()
    parts = [emb.transform([TEXTS[i] for i in b]) for b in blocks]
    moments = resample_blocks([parts[b] for b in train], [1] * len(train))
    y = np.concatenate([np.asarray(LABELS)[blocks[b]] for b in train])
    scale = feature_scale(moments.pooled)
    moments = moments.scaled(scale)
    row = rep.rows[3]
    assert (row["layer"], row["replicate"]) == (1, 1)
    assert row["ntps"] == NTPSScorer().fit(moments, y).ntps_
    logme = LogMEScorer().fit(moments, y)
    assert row["logme"] == logme.score_
    # Every score beside its chance level, from the same shuffles.
    assert (row["logme_chance"], row["logme_chance_std"]) == (logme.chance_, logme.chance_std_)
    assert np.isnan(row["rankme_chance"])  # RankMe reads no labels
    assert isinstance(row["within_noise"], bool)
    assert rep.datasets["toy"]["n_train"] == [sum(blocks[b].size for b in tr)
                                              for tr, _ in block_partitions(5, 1, 2, seed)]
    # The probe: trained on the rescaled training blocks, scored on the test blocks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = clone(default_probe()).fit(moments.pooled, y)
    X_test = np.concatenate([parts[b].pooled for b in test]) * scale
    y_test = np.concatenate([np.asarray(LABELS)[blocks[b]] for b in test])
    assert row["probe_accuracy"] == probe.score(X_test, y_test)
    assert row["probe_train_accuracy"] == probe.score(moments.pooled, y)
    assert row["probe_C"] == np.ravel(probe[-1].C_)[0] and row["probe_C"] in PROBE_CS


def test_the_same_command_in_two_processes_writes_identical_files(tiny_llama, tmp_path):
    outputs = []
    # The probes in worker processes (the default) and here, folds in parallel.
    for run, jobs in (("a", []), ("b", ["--n-jobs", "1"])):
        env = {**os.environ, "SKLEARN_NTPS_CACHE": str(tmp_path / f"cache-{run}")}
        out = tmp_path / run
        subprocess.run(
            [sys.executable, "-m", "sklearn_ntps.cli", "report", "--model", tiny_llama,
             "--dataset", "sms_spam", "--n-texts", "80", "--n-replicates", "2", "--no-plot",
             "--no-progress", "--output-dir", str(out), *jobs],
            check=True, env=env, capture_output=True)
        outputs.append((out / "report.csv").read_bytes())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 1 + 3 * 2


def test_probes_in_worker_processes_give_the_same_rows(tiny_llama, ntps_cache):
    here = small_report(tiny_llama, n_replicates=2, n_jobs=1)
    apart = small_report(tiny_llama, n_replicates=2)  # n_jobs=-1
    # repr: every float to the bit, NaN equal to NaN, and the columns in the same order.
    assert repr(apart.rows) == repr(here.rows)


def test_a_failing_probe_fails_the_report(tiny_llama, ntps_cache):
    from sklearn.dummy import DummyClassifier

    with pytest.raises(ValueError, match="strategy"):
        small_report(tiny_llama, n_jobs=2, probe=DummyClassifier(strategy="nonsense"))


def toy_report(n_rep=1):
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(n_rep):
        for model in ("m1", "m2"):
            for dataset in ("d1", "d2", "d3"):
                for layer in range(5):
                    acc = 0.5 + 0.05 * layer + 0.01 * rng.normal()
                    rows.append({"model": model, "dataset": dataset, "layer": layer,
                                 "replicate": rep, "good": acc + 0.001 * rng.normal(),
                                 "bad": -acc, "probe_accuracy": acc,
                                 "probe_train_accuracy": 1.0, "probe_C": 0.1})
    return Report(["good", "bad"], {"d1": {"n_texts": 10}}, n_replicates=n_rep, rows=rows)


def test_outputs(tmp_path):
    rep = toy_report(n_rep=3)
    paths = save_report(rep, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["report.csv", "report.json", "report.png",
                                             "summary.csv"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert len(rows) == 90 and set(rows[0]) >= {"good", "bad", "probe_accuracy", "probe_C"}
    summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    mean_rho = [r for r in summary if (r["metric"], r["score"], r["group"])
                == ("layer_spearman", "good", "mean")]
    assert float(mean_rho[0]["estimate"]) == pytest.approx(1.0)
    assert mean_rho[0]["n"] == "6"  # six (model, data set) tasks

    def no_nan(constant):
        raise AssertionError(f"report.json holds {constant}, which strict JSON has not")

    data = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=no_nan)
    assert data["recommendation"]["pick"] == "good" and data["n_replicates"] == 3
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    text = rep.to_text()
    assert "lowest mean layer regret: good" in text and "last layer" in text
    assert "Recommended layer" not in text  # no LogME column here


def test_regret_is_printed_in_accuracy_points():
    rows = [{"model": "m", "dataset": "d", "layer": layer, "replicate": 0, "s": s,
             "probe_accuracy": acc, "probe_train_accuracy": 1.0, "probe_C": 1.0}
            for layer, (s, acc) in enumerate([(1, 0.9), (2, 0.6), (0, 0.7)])]
    text = Report(["s"], {"d": {}}, rows=rows).to_text()
    # s picks layer 1 (0.6), 30 points below layer 0; never printed as 0.300.
    import re

    assert re.search(r"\n +s +30\.0\n", text) and "0.300" not in text


@pytest.mark.parametrize("n_groups", [1, 2, 3, 6])
def test_the_figure_has_no_empty_panel(n_groups):
    rows = [r for r in toy_report().rows
            if (r["model"], r["dataset"]) in [(m, d) for m in ("m1", "m2")
                                              for d in ("d1", "d2", "d3")][:n_groups]]
    fig = report_module.report_figure(Report(["good", "bad"], rows=rows))
    main_axes = [ax for ax in fig.axes if ax.get_label() in
                 {f"g{i}" for i in range(n_groups)} | {"regret", "spearman"}]
    assert len(main_axes) == n_groups + 2
    for ax in main_axes:
        assert ax.get_visible() and (ax.lines or ax.patches)


def test_plot_leaves_pyplot_alone(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    report_module.plot_report(toy_report())
    assert matplotlib.get_backend() == backend


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "plot_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_report(toy_report(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write the report"):
        report_module.check_writable(blocker / "sub")


def test_a_fixed_split_is_one_partition(tiny_llama, ntps_cache):
    train, test = (TEXTS[:40], LABELS[:40]), (TEXTS[40:], LABELS[40:])
    rep = run_report([tiny_llama], {"own": (*train, *test)}, progress=False,
                     scorers={"logme": default_scorers()["logme"]},
                     embedding_params={"batch_size": 4})
    assert rep.datasets["own"] == {"n_texts": 60, "n_classes": 3, "n_train": [40]}
    assert [(r["layer"], r["replicate"]) for r in rep.rows] == [(0, 0), (1, 0), (2, 0)]
    with pytest.raises(ValueError, match=r"fixed training and test split.*n_replicates must be 1"):
        run_report([tiny_llama], {"own": (*train, *test)}, n_replicates=2, progress=False)



def test_random_labels_put_every_layer_within_noise_and_say_so(tiny_llama, ntps_cache):
    noise = list(np.random.default_rng(3).permutation(LABELS))
    rep = run_report([tiny_llama], {"toy": (TEXTS, noise)}, progress=False,
                     embedding_params={"batch_size": 4}, n_blocks=5, n_test_blocks=1)
    assert all(r["within_noise"] for r in rep.rows)
    text = rep.to_text()
    assert "Scores against their chance level" in text
    assert "replicate 0: every layer" in text
