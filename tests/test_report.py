import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn_ntps import report as report_module  # noqa: E402
from sklearn_ntps.report import Report, layer_report, save_report  # noqa: E402

from test_embedding import LABELS, TEXTS  # noqa: E402


def small_report(tiny_llama):
    return layer_report(
        [tiny_llama], TEXTS * 3, LABELS * 3, TEXTS, LABELS, dataset="toy",
        n_components=4, embedding_params={"batch_size": 4}, progress=False,
    )


def test_layer_report_rows(tiny_llama, ntps_cache):
    rep = small_report(tiny_llama)
    assert [r["layer"] for r in rep.rows] == [0, 1, 2]
    for row in rep.rows:
        assert 0 <= row["ntps"] <= 1 and 0 <= row["ntps_whitened"] <= 1
        assert 0 <= row["probe_accuracy"] <= 1
    # The table's NTPS is the scorer's on the same training texts.
    from sklearn_ntps import HFEmbeddingTransformer, NTPSScorer

    moments = HFEmbeddingTransformer(model_name_or_path=tiny_llama, layer=1, output="tokens",
                                     progress=False).fit_transform(TEXTS * 3)
    for variant, column in (("paper", "ntps"), ("whitened", "ntps_whitened")):
        expected = NTPSScorer(n_components=4, variant=variant).fit(moments, LABELS * 3).ntps_
        assert rep.rows[1][column] == pytest.approx(expected, abs=1e-9)


def test_spearman_and_outputs(tmp_path):
    rep = Report("toy", 10, 5, 0.25, rows=[
        {"model": "m", "layer": i, "ntps": v, "ntps_whitened": w, "probe_accuracy": a}
        for i, (v, w, a) in enumerate([(0.1, 0.5, 0.2), (0.2, 0.4, 0.4), (0.3, 0.3, 0.6), (0.4, 0.2, 0.5)])
    ])
    rho = rep.spearman("m")
    assert rho["ntps"] == pytest.approx(0.8) and rho["ntps_whitened"] == pytest.approx(-0.8)
    paths = save_report(rep, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["report.csv", "report.json", "report.png"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert len(rows) == 4 and float(rows[2]["ntps"]) == 0.3
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["spearman"]["m"]["ntps"] == pytest.approx(0.8)
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "Spearman over layers (m): NTPS +0.800" in rep.to_text()


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    rep = Report("toy", 1, 1, 0.25, rows=[
        {"model": "m", "layer": 0, "ntps": 0.5, "ntps_whitened": 0.5, "probe_accuracy": 0.5}])

    def interrupted(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "plot_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_report(rep, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write the report"):
        report_module.check_writable(blocker / "sub")
    assert np.isnan(Report("toy", 1, 1, 0.25).spearman()["ntps"])
