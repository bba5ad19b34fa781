"""The power analysis of LoRA study v3 (docs/lora_power.py): its vectorised analysis is
docs/lora_tables.py's, and its simulation has the structure it claims."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from builders import docs_module


@pytest.fixture(scope="module")
def power():
    return docs_module("lora_power")


@pytest.fixture(scope="module")
def tables():
    return docs_module("lora_tables")


def study_rows(rng, sizes, n_models=2, ties=False):
    rows = []
    for s, n in enumerate(sizes):
        for t in range(n):
            for m in range(n_models):
                x, g = rng.normal(size=2)
                if ties:  # a few values shared between rows, as v2's gains of 0.0
                    x, g = round(x, 0), round(g, 0)
                rows.append({"source": f"s{s}", "task": f"s{s}t{t}", "model": f"m{m}",
                             "x": x, "g": g})
    return rows


@pytest.mark.parametrize("ties", [False, True])
def test_the_interval_is_cluster_bootstrap_of_the_mean_spearman(power, tables, ties):
    from sklearn_ntps.evidence.study import spearman

    rows = study_rows(np.random.default_rng(3), [4, 3, 2, 1, 1, 2], ties=ties)
    models = sorted({r["model"] for r in rows})

    def statistic(rs):
        return float(np.mean([spearman([r["x"] for r in rs if r["model"] == m],
                                       [r["g"] for r in rs if r["model"] == m])
                              for m in models]))

    expected = tables.cluster_bootstrap(rows, statistic, n_boot=400, seed=5, bounds=(-1, 1))
    tasks = sorted({r["task"] for r in rows})
    value = {(r["task"], r["model"]): r for r in rows}
    x = [[value[t, m]["x"] for t in tasks] for m in models]
    g = [[value[t, m]["g"] for t in tasks] for m in models]
    source = [value[t, models[0]]["source"] for t in tasks]
    got = power.clustered_interval(x, g, source, n_boot=400, seed=5)
    for key in ("estimate", "low", "high"):
        assert got[key] == pytest.approx(expected[key], abs=1e-10), key


def test_weighted_spearman_is_spearman_of_the_repeated_sample(power):
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=7), rng.normal(size=7)
    x[2] = x[5]  # a tie between two rows
    weights = rng.integers(0, 3, size=(5, 7)).astype(float)
    weights[:, :3] += 1
    got = power._weighted_spearman(x, g, weights)
    for b in range(5):
        reps = np.repeat(np.arange(7), weights[b].astype(int))
        assert got[b] == pytest.approx(spearmanr(x[reps], g[reps]).statistic, abs=1e-12)
    assert np.isnan(power._weighted_spearman(x, g, np.eye(7)[[0]] * 4))  # one row repeated


def test_the_simulated_rows_have_the_registered_structure(power):
    rng = np.random.default_rng(1)
    sources = np.repeat(np.arange(40), 10)
    draws = power.simulate_rows(rng, sources, 40, 2, 20)
    shares = {"source": 0.5, "task": 0.3, "row": 0.2}
    x, g = power.rows_at(draws, -0.5, shares, 0.0)
    assert x.shape == g.shape == (20, 2, 400)
    rhos = [spearmanr(x[i, m], g[i, m]).statistic for i in range(20) for m in range(2)]
    assert np.mean(rhos) == pytest.approx(-0.5, abs=0.05)
    # The two models' rows of a task share the source and task parts: correlation 0.8.
    assert np.corrcoef(x[:, 0].ravel(), x[:, 1].ravel())[0, 1] == pytest.approx(0.8, abs=0.03)
    _, noisy = power.rows_at(draws, -0.5, shares, 1.0)
    assert np.var(noisy - g) == pytest.approx(1.0, abs=0.05)


def test_variance_shares_recover_a_known_structure(power):
    rng = np.random.default_rng(2)
    rows = []
    for s in range(30):
        a = rng.normal()
        for t in range(3):
            for m in range(2):  # the source alone: every share but the source's is 0
                rows.append({"source": s, "task": f"{s}-{t}", "model": m, "v": a + 1e-6 * t})
    shares = power.variance_shares(rows, "v")
    assert shares["source"] > 0.99 and shares["row"] == pytest.approx(0, abs=1e-9)
    for r in rows:  # the row alone
        r["v"] = rng.normal()
    shares = power.variance_shares(rows, "v")
    assert shares["row"] > 0.6 and sum(shares.values()) == pytest.approx(1)
    v2 = power.v2_shares()
    assert set(v2) == {"ntps", "gain", "common"}
    assert sum(v2["common"].values()) == pytest.approx(1)


def test_power_and_the_smallest_detectable_rho(power):
    shares = {"source": 0.2, "task": 0.4, "row": 0.4}
    curve = power.power_curve(16, 1, shares, 0.5, rhos=(-0.3, -0.9), n_sims=60, n_boot=200)
    assert set(curve) == {0.0, -0.3, -0.9}
    assert curve[0.0]["below"] < 0.2 and curve[-0.9]["below"] > 0.9
    assert curve[-0.3]["below"] <= curve[-0.9]["below"]
    flat = {-0.2: {"below": 0.5}, -0.4: {"below": 0.7}, -0.6: {"below": 0.9}}
    assert power.smallest_detectable(flat) == pytest.approx(0.5)
    assert power.smallest_detectable({-0.2: {"below": 0.1}, -0.4: {"below": 0.3}}) is None
    assert power.smallest_detectable({-0.2: {"below": 0.85}}) == pytest.approx(0.2)
