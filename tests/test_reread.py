"""The re-read's statistics with known answers (sklearn_ntps.evidence.reread)."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from sklearn_ntps.choice.protocol import task_interval
from sklearn_ntps.evidence.reread import (
    lowest_share,
    model_choice_default,
    noise_floor,
    probe_best_layers,
    two_way_interval,
    variance_explained,
)


def test_two_way_interval_of_a_pure_model_effect_is_the_model_bootstrap():
    # The value depends on the model alone: a two-way resample's mean is sum_m c_m a_m / M,
    # the bootstrap of the 3 model means, whose SE is sqrt(var(a) / M) (population variance).
    a = {"m0": 0.0, "m1": 10.0, "m2": 20.0}
    values = {(m, f"d{d}"): a[m] for m in a for d in range(10)}
    two = two_way_interval(values, n_boot=4000)
    assert two["estimate"] == pytest.approx(10.0) and two["n"] == 30
    assert (two["n_models"], two["n_datasets"], two["df"]) == (3, 10, 2)
    assert two["se"] == pytest.approx(np.sqrt(200 / 9), rel=0.05)
    assert two["high"] - two["estimate"] == pytest.approx(student_t.ppf(0.975, 2) * two["se"])
    # Section 3's interval took the 30 tasks as independent: far narrower.
    one = task_interval(list(values.values()), n_boot=4000)
    assert one["se"] == pytest.approx(np.sqrt(200 / 3 / 30), rel=0.05)
    assert two["high"] - two["low"] > 4 * (one["high"] - one["low"])


def test_two_way_interval_of_a_pure_dataset_effect_is_the_dataset_bootstrap():
    b = np.arange(10.0)
    values = {(m, f"d{d}"): b[d] for m in ("m0", "m1", "m2") for d in range(10)}
    two = two_way_interval(values, n_boot=4000)
    assert two["se"] == pytest.approx(np.sqrt(b.var() / 10), rel=0.05)


def test_two_way_interval_leaves_nan_tasks_out_and_needs_two_clusters_a_side():
    values = {("m0", "a"): 1.0, ("m0", "b"): np.nan, ("m1", "a"): 3.0, ("m1", "b"): 5.0}
    cell = two_way_interval(values)
    assert cell["estimate"] == pytest.approx(3.0) and cell["n"] == 3 and cell["df"] == 1
    alone = two_way_interval({("m0", "a"): 1.0, ("m0", "b"): 2.0})
    assert alone["estimate"] == pytest.approx(1.5) and np.isnan(alone["low"])


def test_lowest_share_counts_a_tie_as_half():
    # A loses nothing on m1 and 10 points on m2, B 5 everywhere. Two models drawn with
    # replacement: both m1 (1/4): A lowest; one each (1/2): a tie at 5; both m2 (1/4): B.
    tasks = [(m, f"d{d}") for m in ("m1", "m2") for d in range(4)]
    table = {"A": {t: 0.0 if t[0] == "m1" else 10.0 for t in tasks}, "B": dict.fromkeys(tasks, 5.0)}
    share = lowest_share(table, n_boot=4000)
    assert share["A"] == pytest.approx(0.5, abs=0.03) and share["B"] == pytest.approx(0.5, abs=0.03)
    assert sum(share.values()) == pytest.approx(1.0)
    # Without a tie (A loses 8 on m2): A is lowest in 3 resamples of 4.
    table["A"] = {t: 0.0 if t[0] == "m1" else 8.0 for t in tasks}
    assert lowest_share(table, n_boot=4000)["A"] == pytest.approx(0.75, abs=0.03)
    # The 8 tasks resampled as independent: A's mean is the number k of m2 tasks drawn; it is
    # lowest for k < 5 and ties at k = 5.
    one_way = lowest_share(table, two_way=False, n_boot=4000)["A"]
    from scipy.stats import binom

    assert one_way == pytest.approx(binom.cdf(4, 8, 0.5) + binom.pmf(5, 8, 0.5) / 2, abs=0.03)


def test_noise_floor_by_hand():
    accs = [[0.5, 0.75, 0.625], [0.5, 0.625, 0.75], [0.5, 0.75, 0.5]]
    rows = [{"model": "m", "dataset": "d", "layer": layer, "replicate": rep,
             "probe_accuracy": a} for rep, acc in enumerate(accs) for layer, a in enumerate(acc)]
    # Replicate 0 follows the mean of 1 and 2 (layer 1): no loss. Replicate 1 follows 0 and 2
    # (layer 1): 0.75 - 0.625. Replicate 2 follows 0 and 1, tied at 0.6875 between layers 1
    # and 2: the lower, layer 1, no loss.
    assert noise_floor(rows)[("m", "d")] == pytest.approx(12.5 / 3)
    assert probe_best_layers(rows) == {("m", "d"): [1, 2, 1]}
    one = [r for r in rows if r["replicate"] == 0]
    assert np.isnan(noise_floor(one)[("m", "d")])


def test_variance_explained_by_model_and_dataset():
    additive = {(m, d): 3 * i - 2 * j for i, m in enumerate("abc") for j, d in enumerate("xyzw")}
    assert variance_explained(additive) == pytest.approx(1.0)
    checker = {(m, d): (-1) ** (i + j) for i, m in enumerate("ab") for j, d in enumerate("xy")}
    assert variance_explained(checker) == pytest.approx(0.0, abs=1e-12)
    # Half the variance from the model, half from the interaction.
    half = {("a", "x"): 2.0, ("a", "y"): 0.0, ("b", "x"): -2.0, ("b", "y"): 0.0}
    assert variance_explained(half) == pytest.approx(0.5)


def test_rule_m_separates_the_only_score_behind_on_neither_axis():
    rows = choice_rows()
    rule = model_choice_default(rows, ["good", "bad", "layers"], ["layers", "bad", "good"])
    pair, model = "pair_regret[best-layer]", "model_regret[best-layer]"
    assert rule["leaders"] == {pair: "good", model: "layers"}  # a tie at 0: the cheaper
    assert rule["regret"][model]["layers"] == 0 and rule["regret"][pair]["good"] == 0
    # 'layers' picks the right model at its worst layer: behind on the (model, layer) axis only.
    assert "layers" in rule["behind"][pair] and "layers" not in rule["behind"][model]
    assert rule["tied"] == ["good"] and rule["separated"] and rule["default"] == "good"


def test_rule_m_takes_the_cheapest_of_the_tied():
    rows = choice_rows()
    rule = model_choice_default(rows, ["good", "twin", "bad"], ["bad", "twin", "good"])
    assert rule["tied"] == ["twin", "good"] and not rule["separated"]
    assert rule["default"] == "twin"
    with pytest.raises(ValueError, match="cheapness"):
        model_choice_default(rows, ["good", "other"], ["good"])


def choice_rows(seed=0):
    """Six data sets, two models: 'good' and 'twin' are the probe's accuracy, 'bad' its
    reverse, 'layers' picks each data set's better model but that model's worst layer."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(6):
        for model in ("m1", "m2"):
            acc = rng.uniform(0.5, 0.9, size=4)
            rows += [{"model": model, "dataset": f"d{d}", "layer": layer, "replicate": 0,
                      "probe_accuracy": a, "good": a, "twin": a, "bad": -a}
                     for layer, a in enumerate(acc)]
    for d in range(6):
        mine = [r for r in rows if r["dataset"] == f"d{d}"]
        top = max(mine, key=lambda r: r["probe_accuracy"])["model"]
        for r in mine:
            r["layers"] = -r["probe_accuracy"] + 10 * (r["model"] == top)
    return rows
