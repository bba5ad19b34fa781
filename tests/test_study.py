import numpy as np
import pytest
from scipy.stats import t as student_t

from sklearn_ntps.choice.protocol import task_interval
from sklearn_ntps.evidence.study import (
    leave_one_dataset_out,
    paired_differences,
    paper_protocol,
    per_replicate,
    replicate_metrics,
    rule_a,
    rule_b,
    summarize,
    wins,
)


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


# ----------------------------------------------------------------- metrics
def test_layer_metrics_by_hand():
    m = replicate_metrics(rows_from(TABLE), ["s", "t"])
    assert m["layer_spearman", "s", ("m", "d1")] == pytest.approx(0.8)
    assert m["layer_spearman", "t", ("m", "d1")] == pytest.approx(-0.4)
    # s picks layer 2 on d1 (best: no regret) and layer 1 on d2 (best again).
    assert m["layer_pick", "s", ("m", "d1")] == 2 and m["layer_regret", "s", ("m", "d1")] == 0
    # t picks layer 0 on d1 (0.9 - 0.5) and layer 3 on d2 (0.4 - 0.1): in accuracy points.
    assert m["layer_regret", "t", ("m", "d1")] == pytest.approx(40)
    assert m["layer_regret", "last layer", ("m", "d1")] == pytest.approx(30)
    assert m["layer_pick", "layer at 2/3 depth", ("m", "d2")] == 2
    assert m["layer_regret", "layer at 2/3 depth", ("m", "d2")] == pytest.approx(20)


def test_model_selection_by_best_layer_and_layer_mean():
    # Model a: one excellent layer among poor ones; model b: uniformly good.
    table = {("a", "d"): ([0.5, 0.5, 0.95], {"s": [0.0, 0.0, 10.0]}),
             ("b", "d"): ([0.8, 0.85, 0.9], {"s": [4.0, 5.0, 6.0]})}
    m = replicate_metrics(rows_from(table), ["s"])
    # best-layer: a (10 > 6), its best layer: no regret at all.
    assert m["model_regret[best-layer]", "s", "d"] == 0
    assert m["pair_regret[best-layer]", "s", "d"] == 0
    # layer mean: b (5 > 3.33); b's best layer is 0.9, 5 points below a's 0.95.
    assert m["model_regret[layer-mean]", "s", "d"] == pytest.approx(5)
    assert m["pair_regret[layer-mean]", "s", "d"] == pytest.approx(5)
    assert m["pair_regret", "s", "d"] == 0


def test_task_interval_uses_t_over_tasks():
    values = np.array([0.0, 1.0, 3.0, 4.0, 7.0])
    cell = task_interval(values, n_boot=20000)
    assert cell["estimate"] == pytest.approx(3.0) and cell["n"] == 5
    # The bootstrap SE of a mean is s / sqrt(n) * sqrt((n - 1) / n).
    se = values.std(ddof=0) / np.sqrt(5)
    assert cell["se"] == pytest.approx(se, rel=0.03)
    q = student_t.ppf(0.975, 4)
    assert cell["high"] - cell["estimate"] == pytest.approx(q * cell["se"])
    assert q > 2.7  # wider than 1.96 with five tasks
    assert np.isnan(task_interval([1.0])["low"]) and task_interval([np.nan, 2.0])["n"] == 1


def noisy_study(n_tasks=12, n_rep=3, seed=0):
    """Tasks where 'good' follows accuracy, 'bad' is reversed, 'coin' is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in range(n_tasks):
        acc = rng.uniform(0.5, 0.9, size=6)
        coin = rng.normal(size=6)
        for rep in range(n_rep):
            a = acc + 0.005 * rng.normal(size=6)
            rows += rows_from({(f"m{task % 3}", f"d{task // 3}"): (
                a, {"good": a + 0.001 * rng.normal(size=6), "bad": -a, "coin": coin})},
                replicate=rep)
    return rows


def test_summary_means_over_tasks_with_replicate_spread():
    rows = noisy_study()
    s = summarize(rows, ["good", "bad", "coin"])
    good = s["layer_spearman", "good", "mean"]
    assert good["n"] == 12 and good["estimate"] > 0.9
    assert good["low"] <= good["estimate"] <= good["high"]
    assert good["rep_low"] <= good["estimate"] <= good["rep_high"]
    assert s["layer_regret", "bad", "mean"]["low"] > s["layer_regret", "good", "mean"]["high"]
    pick = s["layer_pick", "good", ("m0", "d0")]
    assert len(pick["picks"]) == 3 and pick["estimate"] in pick["picks"]
    # The data-set axis: per model, over its layers; the mean resamples the 3 models.
    assert s["dataset_spearman", "good", "mean"]["n"] == 3


def test_rule_b_claims_a_winner_only_when_task_intervals_separate():
    rows = noisy_study()
    rec = rule_b(rows, ["good", "bad", "coin", "last layer"])
    assert rec["pick"] == "good" and rec["separated"]
    assert rec["wins"]["good"] == 12 and rec["wins"]["bad"] == 0
    diffs = paired_differences(per_replicate(rows, ["good", "bad"]), ["good", "bad"], "good")
    assert diffs["bad"]["low"] > 0 and diffs["bad"]["n"] == 12
    # Two candidates that are the same score cannot be separated.
    twin = [{**r, "twin": r["good"]} for r in rows]
    tied = rule_b(twin, ["good", "twin", "bad"])
    assert tied["tied"] == ["good", "twin"] and not tied["separated"]
    assert tied["not_separated_from"] == ["twin"]


def test_wins_count_ties_for_each():
    rows = rows_from({("m", "d"): ([0.1, 0.9], {"a": [0, 1], "b": [0, 2], "c": [1, 0]})})
    assert wins(per_replicate(rows, ["a", "b", "c"]), ["a", "b", "c"]) == {"a": 1, "b": 1, "c": 0}
    # Shared, a tie of two gives each half: the wins add up to the tasks.
    assert wins(per_replicate(rows, ["a", "b", "c"]), ["a", "b", "c"], shared=True) == {
        "a": 0.5, "b": 0.5, "c": 0.0}


def test_leave_one_dataset_out_scores_each_choice_on_unseen_data():
    rows = noisy_study()

    def choose(train_rows):
        seen = sorted({r["dataset"] for r in train_rows})
        return seen[0]

    def evaluate(held_rows, choice):
        assert choice != held_rows[0]["dataset"]  # never chosen on the data it is scored on
        return len(held_rows)

    out = leave_one_dataset_out(rows, choose, evaluate)
    assert sorted(out["folds"]) == ["d0", "d1", "d2", "d3"]
    assert out["folds"]["d0"]["choice"] == "d1" and out["mean"]["n"] == 4


def test_rule_a_prefers_the_fewest_changes_within_the_margin():
    rows = noisy_study()
    rows = [{**r, "best": r["good"], "near": r["good"] + 0.02 * (r["layer"] % 2),
             "bad_cfg": r["bad"]} for r in rows]
    configs = {"best": {"k": 0.5, "variant": "w"}, "near": {"k": 0.25, "variant": "w"},
               "bad_cfg": {"k": 0.25, "variant": "w"}}
    winner, crit = rule_a(rows, configs, eligible=set(configs), current={"k": 0.25,
                                                                          "variant": "w"})
    assert crit["best"] > crit["near"] > crit["bad_cfg"]
    assert winner == "near"  # within 0.05 of the best and no parameter changed
    strict, _ = rule_a(rows, configs, eligible=set(configs), current={"k": 0.25, "variant": "w"},
                       margin=0.0)
    assert strict == "best"
    assert rule_a(rows, configs, eligible={"bad_cfg"}, current={"k": 0.5})[0] == "bad_cfg"


def test_paper_protocol_is_optimistic_when_k_is_chosen_on_training_accuracy():
    rng = np.random.default_rng(0)
    rows = []
    for task in range(8):
        train = rng.uniform(0.6, 1.0, size=7)
        test = train - rng.uniform(0, 0.3, size=7)
        for layer in range(7):
            # k1 tracks training accuracy exactly; k2 is noise; 'fixed' tracks the test.
            rows.append({"model": f"m{task % 2}", "dataset": f"d{task // 2}", "layer": layer,
                         "replicate": 0, "probe_accuracy": test[layer],
                         "probe_train_accuracy": train[layer], "k1": train[layer],
                         "k2": rng.normal(), "fixed": test[layer]})
    out = paper_protocol(rows, {0.1: "k1", 0.5: "k2"}, "fixed")
    layers = out["layers"]
    assert layers["paper"]["estimate"] == pytest.approx(1.0)  # k1, perfectly, on training data
    assert layers["held_out"]["estimate"] == pytest.approx(1.0)
    assert layers["paper_choice_held_out"]["estimate"] < 1.0
    assert out["datasets"]["paper"]["n"] == 2
    assert out["datasets"]["paper"]["estimate"] == pytest.approx(1.0)  # k1 again, in both
