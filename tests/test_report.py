import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn_ntps import report as report_module  # noqa: E402
from sklearn_ntps.report import Report, run_report, save_report  # noqa: E402

from test_embedding import LABELS, TEXTS  # noqa: E402


def small_report(tiny_llama, **kwargs):
    data = {"toy": (TEXTS * 3, LABELS * 3, TEXTS, LABELS)}
    return run_report([tiny_llama], data, embedding_params={"batch_size": 4}, progress=False,
                      **kwargs)


def test_rows_hold_every_scorer_and_the_probe(tiny_llama, ntps_cache):
    rep = small_report(tiny_llama)
    picked = rep.summary["layer_pick", "logme", (tiny_llama, "toy")]["estimate"]
    assert f"/ toy: layer {picked:.0f} (" in rep.to_text()
    assert max(rep.point_rows, key=lambda r: r["logme"])["layer"] == picked
    assert [r["layer"] for r in rep.rows] == [0, 1, 2]
    assert rep.scores == ["ntps", "ntps_paper", "ntps_paper_exact", "logme", "hscore",
                          "transrate", "rankme"]
    for row in rep.rows:
        assert 0 <= row["ntps"] <= 1 and 0 <= row["ntps_paper_exact"] <= 1
        assert 0 <= row["probe_accuracy"] <= 1 and row["replicate"] == 0
    # Each column is its scorer's, fitted on the same training texts.
    from sklearn_ntps import HFEmbeddingTransformer, LogMEScorer, NTPSScorer

    moments = HFEmbeddingTransformer(model_name_or_path=tiny_llama, layer=1, output="tokens",
                                     progress=False).fit_transform(TEXTS * 3)
    assert rep.rows[1]["ntps"] == pytest.approx(NTPSScorer().fit(moments, LABELS * 3).ntps_)
    assert rep.rows[1]["logme"] == pytest.approx(LogMEScorer().fit(moments, LABELS * 3).score_)


def test_bootstrap_replicates_resample_blocks_and_test_texts(tiny_llama, ntps_cache):
    rep = small_report(tiny_llama, n_bootstrap=3, n_blocks=4)
    assert sorted({r["replicate"] for r in rep.rows}) == [0, 1, 2, 3]
    point = {r["layer"]: r for r in rep.point_rows}
    # Replicate 0 is the plain study: blocks add up to the whole training set.
    plain = small_report(tiny_llama)
    # Blocks batch the texts differently (float32 noise); LogME and TransRate
    # amplify it on these duplicated texts, which the features fit exactly.
    stable = [c for c in plain.scores if c not in ("logme", "transrate")]
    for r in plain.rows:
        for column in stable:
            assert point[r["layer"]][column] == pytest.approx(r[column], rel=1e-6), column
    moved = [r for r in rep.rows if r["replicate"] > 0 and r["ntps"] != point[r["layer"]]["ntps"]]
    assert moved, "the replicates must resample the training texts"
    cell = rep.summary["layer_regret", "ntps", "mean"]
    assert np.isfinite(cell["se"]) and cell["low"] <= cell["estimate"] <= cell["high"]


def toy_report(n_boot=0):
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(n_boot + 1):
        for model in ("m1", "m2"):
            for dataset in ("d1", "d2", "d3"):
                for layer in range(5):
                    acc = 0.5 + 0.05 * layer + 0.01 * rng.normal()
                    rows.append({"model": model, "dataset": dataset, "layer": layer,
                                 "replicate": rep, "good": acc + 0.001 * rng.normal(),
                                 "bad": -acc, "probe_accuracy": acc})
    return Report(["good", "bad"], {"d1": {"n_train": 10, "n_test": 5}}, n_bootstrap=n_boot,
                  rows=rows)


def test_outputs(tmp_path):
    rep = toy_report(n_boot=4)
    paths = save_report(rep, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["replicates.csv", "report.csv", "report.json",
                                             "report.png", "summary.csv"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert len(rows) == 30 and set(rows[0]) >= {"good", "bad", "probe_accuracy"}
    assert len(list(csv.DictReader(open(tmp_path / "out" / "replicates.csv")))) == 150
    summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    mean_rho = [r for r in summary if (r["metric"], r["score"], r["group"])
                == ("layer_spearman", "good", "mean")]
    assert float(mean_rho[0]["estimate"]) == pytest.approx(1.0)
    def no_nan(constant):
        raise AssertionError(f"report.json holds {constant}, which strict JSON has not")

    data = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=no_nan)
    assert data["recommendation"]["pick"] == "good" and data["n_bootstrap"] == 4
    # Without replicates there is no interval: null, not NaN.
    plain = json.loads(toy_report().to_json(), parse_constant=no_nan)
    assert all(c["se"] is None for c in plain["summary"])
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    text = rep.to_text()
    assert "lowest mean layer regret: good" in text and "last layer" in text
    assert "Recommended layer" not in text  # no LogME column here


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
