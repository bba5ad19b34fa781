import numpy as np
import pytest

from sklearn_ntps.study import paired_regret_differences, recommend, replicate_metrics, summarize


def rows_from(table, replicate=0):
    """table: {(model, dataset): (probe accuracies, {score: values})}."""
    rows = []
    for (model, dataset), (acc, scores) in table.items():
        for layer, a in enumerate(acc):
            rows.append({"model": model, "dataset": dataset, "layer": layer,
                         "replicate": replicate, "probe_accuracy": a,
                         **{s: v[layer] for s, v in scores.items()}})
    return rows


TABLE = {
    ("m", "d1"): ([0.5, 0.7, 0.9, 0.6], {"s": [1, 2, 3, 0], "t": [4, 3, 2, 1]}),
    ("m", "d2"): ([0.3, 0.4, 0.2, 0.1], {"s": [1, 3, 2, 0], "t": [0, 1, 2, 3]}),
}


def test_layer_metrics_by_hand():
    m = replicate_metrics(rows_from(TABLE), ["s", "t"])
    assert m["layer_spearman", "s", ("m", "d1")] == pytest.approx(0.8)
    assert m["layer_spearman", "t", ("m", "d1")] == pytest.approx(-0.4)
    # s picks layer 2 on d1 (best: no regret) and layer 1 on d2 (best again).
    assert m["layer_pick", "s", ("m", "d1")] == 2 and m["layer_regret", "s", ("m", "d1")] == 0
    # t picks layer 0 on d1 (0.9 - 0.5) and layer 3 on d2 (0.4 - 0.1).
    assert m["layer_regret", "t", ("m", "d1")] == pytest.approx(0.4)
    assert m["layer_regret", "t", "mean"] == pytest.approx(0.35)
    # Baselines: last layer (3) and round(2/3 * 3) = 2.
    assert m["layer_regret", "last layer", ("m", "d1")] == pytest.approx(0.3)
    assert m["layer_pick", "layer at 2/3 depth", ("m", "d2")] == 2
    assert m["layer_regret", "layer at 2/3 depth", ("m", "d2")] == pytest.approx(0.2)


def test_dataset_and_model_axes():
    table = {("m", f"d{i}"): ([a], {"s": [a * 2], "t": [-a]}) for i, a in enumerate([.2, .5, .9])}
    table.update({("n", f"d{i}"): ([a], {"s": [a], "t": [a]}) for i, a in enumerate([.1, .6, .7])})
    m = replicate_metrics(rows_from(table), ["s", "t"])
    assert m["dataset_spearman", "s", ("m", 0)] == pytest.approx(1.0)
    assert m["dataset_spearman", "t", ("m", 0)] == pytest.approx(-1.0)
    # Across models, per data set: two (model, layer) pairs; too few for a correlation.
    assert np.isnan(m["model_spearman", "s", "d0"])
    # s picks m on d0 (0.4 > 0.1): the better model, no regret; t picks n.
    assert m["model_regret", "s", "d0"] == 0 and m["model_regret", "t", "d0"] == pytest.approx(0.1)


def test_constant_score_has_no_correlation():
    table = {("m", "d"): ([0.1, 0.2, 0.3], {"s": [1, 1, 1]})}
    assert np.isnan(replicate_metrics(rows_from(table), ["s"])["layer_spearman", "s", ("m", "d")])


def bootstrap_rows(noise, n_rep=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(n_rep + 1):
        acc = np.array([0.5, 0.6, 0.7, 0.8, 0.75])
        if rep:
            acc = acc + noise * rng.normal(size=5)
        good, bad = acc + 0.001 * rng.normal(size=5), -acc
        rows += rows_from({("m", "d"): (acc, {"good": good, "bad": bad})}, replicate=rep)
    return rows


def test_intervals_cover_the_estimate_and_shrink_with_noise():
    wide = summarize(bootstrap_rows(0.05), ["good", "bad"])["layer_regret", "bad", "mean"]
    narrow = summarize(bootstrap_rows(0.001), ["good", "bad"])["layer_regret", "bad", "mean"]
    assert wide["low"] <= wide["estimate"] <= wide["high"]
    assert narrow["se"] < wide["se"]
    without = summarize(bootstrap_rows(0.01, n_rep=0), ["good"])["layer_regret", "good", "mean"]
    assert np.isnan(without["se"])


def test_recommend_claims_a_winner_only_when_intervals_separate():
    clear = recommend(bootstrap_rows(0.001), ["good", "bad", "last layer"])
    assert clear["pick"] == "good" and clear["separated"]
    diff = paired_regret_differences(bootstrap_rows(0.001), ["good", "bad"], "good")["bad"]
    assert diff["estimate"] == pytest.approx(0.3) and diff["low"] > 0
    # Without replicates nothing separates, whatever the point estimates say.
    vague = recommend(bootstrap_rows(0.001, n_rep=0), ["good", "bad"])
    assert vague["pick"] == "good" and not vague["separated"]
    assert vague["not_separated_from"] == ["bad"]
