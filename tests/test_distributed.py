"""Sharding on Dask, on a LocalCluster of two worker processes on this machine."""

import csv
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_ntps import (
    HFEmbeddingTransformer,
    NTPSScorer,
    cli,
)
from sklearn_ntps.states import cache, embedding, models
from sklearn_ntps.states.distributed import (
    get_client,
    local_cluster,
    plan_shards,
    sharded_statistics,
)
from sklearn_ntps.states.extraction import extract_statistics
from sklearn_ntps.states.statistics import POOLINGS

from builders import TINY_WORDS

_RNG = np.random.default_rng(0)
# Texts of 1 to 14 words of the tiny model's vocabulary: lengths vary, batches pad.
TEXTS = [" ".join(_RNG.choice(TINY_WORDS[3:], size=n)) for n in _RNG.integers(1, 15, 48)]
LABELS = _RNG.integers(0, 2, len(TEXTS))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Compute here as the workers do: Dask gives each worker process one BLAS thread,
    and float32 reductions split over other thread counts round differently."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def address():
    with local_cluster(2) as address:
        yield address


def single_process(path, texts, **params):
    return extract_statistics(models.load_model(path, progress=False), texts, progress=False,
                              **params)


def assert_same_statistics(got, expected):
    """Pooled features bit for bit; the moments' sums regrouped, so to float64 rounding."""
    got, expected = got.to_arrays(), expected.to_arrays()
    assert sorted(got) == sorted(expected)
    for p in POOLINGS:
        np.testing.assert_array_equal(got[f"pooled_{p}"], expected[f"pooled_{p}"])
    for name in ("c0", "c1", "first"):
        scale = np.abs(expected[name]).max()
        assert np.abs(got[name] - expected[name]).max() <= 1e-13 * scale, name
    for name in ("n_pairs", "precision", "layers", "n_truncated", "truncation_limit"):
        assert got[name] == expected[name], name


@pytest.mark.parametrize("n_shards", [None, 5])
def test_sharded_statistics_equal_single_process(tiny_llama, address, n_shards):
    expected = single_process(tiny_llama, TEXTS, batch_size=4)
    got = sharded_statistics(tiny_llama, TEXTS, scheduler=address, n_shards=n_shards,
                             batch_size=4, progress=False)
    assert_same_statistics(got, expected)
    kept = sharded_statistics(tiny_llama, TEXTS, scheduler=address, layers=[0, 2], batch_size=4,
                              with_moments=False, progress=False)
    assert not kept.has_moments and kept.layers == (0, 2)
    np.testing.assert_array_equal(kept.pooled["mean"], expected.pooled["mean"][[0, 2]])


def test_estimator_with_scheduler_loads_no_weights_here(tiny_llama, address, ntps_cache):
    local = HFEmbeddingTransformer(model_name_or_path=tiny_llama, output="tokens", layer=1,
                                   batch_size=4, cache=False, progress=False)
    expected = local.fit_transform(TEXTS)
    models.clear_cache()
    remote = HFEmbeddingTransformer(model_name_or_path=tiny_llama, output="tokens", layer=1,
                                    batch_size=4, scheduler=address, progress=False)
    got = remote.fit_transform(TEXTS)
    assert not models._LOADED  # fit asked a worker; the passes ran there
    np.testing.assert_array_equal(got.pooled, expected.pooled)
    np.testing.assert_allclose(got.c0, expected.c0, rtol=1e-12, atol=1e-13 * abs(got.c0).max())
    assert (remote.n_layers_, remote.n_features_out_, remote.dtype_) == (3, 16, "float32")
    assert remote.model_fingerprint_ == local.model_fingerprint_
    # Where the passes ran is not in the cache key: a local transformer finds the entry.
    hit = HFEmbeddingTransformer(model_name_or_path=tiny_llama, output="tokens", layer=1,
                                 batch_size=4, progress=False).fit(TEXTS)
    hit._load = None  # a cache hit loads no weights
    np.testing.assert_array_equal(hit.transform(TEXTS).c0, got.c0)


def test_plan_shards_keeps_the_batches_of_one_process():
    lengths = _RNG.integers(1, 50, 101)
    order = np.argsort(-lengths, kind="stable")
    for n in (1, 2, 3, 7, 200):
        shards = plan_shards(lengths, n, batch_size=4)
        assert 1 <= len(shards) <= min(n, 26)
        np.testing.assert_array_equal(np.concatenate(shards), order)
        assert all(len(s) % 4 == 0 for s in shards[:-1])
    equal = np.ones(64, int)  # 16 batches of equal cost: 4 shards of 4 batches
    assert [len(s) for s in plan_shards(equal, 4, batch_size=4)] == [16, 16, 16, 16]
    # One long text outweighs the rest: its batch is a shard of its own.
    assert [len(s) for s in plan_shards([100] + [1] * 15, 2, batch_size=4)] == [4, 12]


def test_missing_dask_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-ntps\[dask\]'"):
        get_client("tcp://127.0.0.1:8786")


def test_joblib_dask_backend_runs_a_grid_search(tiny_llama, address):
    import joblib

    emb = HFEmbeddingTransformer(model_name_or_path=tiny_llama, output="tokens", batch_size=4,
                                 cache=False, progress=False)
    pipe = make_pipeline(emb, NTPSScorer(n_components=4))
    grid = {"hfembeddingtransformer__layer": [0, 1, 2]}
    local = GridSearchCV(pipe, grid, cv=3).fit(TEXTS, LABELS)

    def count_loads():  # on each worker: forget the model, count its loads from now on
        from sklearn_ntps.states import models as worker_models

        load = getattr(worker_models, "_uncounted_load", worker_models._load)
        worker_models._uncounted_load, worker_models.n_loads = load, 0

        def counted(*args, **kwargs):
            worker_models.n_loads += 1
            return load(*args, **kwargs)

        worker_models.clear_cache()
        worker_models._load = counted

    with distributed.Client(address) as client:  # the default client: joblib's backend uses it
        client.run(count_loads)
        with joblib.parallel_config(backend="dask"):
            remote = GridSearchCV(pipe, grid, cv=3, refit=False).fit(TEXTS, LABELS)
        loads = client.run(lambda: __import__("sklearn_ntps.states.models").states.models.n_loads)
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], rtol=1e-10)
    # Nine fits over two workers: each loaded the model once at most.
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1, loads


def test_report_on_a_cluster_gives_the_same_report(tiny_llama, address, tmp_path, monkeypatch):
    common = ["report", "--model", tiny_llama, "--dataset", "sms_spam", "--n-texts", "100",
              "--n-components", "4", "--no-plot", "--no-progress"]
    tables = {}
    for name, extra in (("local", []), ("workers", ["--workers", "2"]),
                        ("scheduler", ["--scheduler", address])):
        # A cache of its own per run, so that each one runs the model.
        monkeypatch.setattr(embedding, "cache_dir", lambda name=name: tmp_path / name / "cache")
        cache.clear_memory()
        assert cli.main([*common, "--output-dir", str(tmp_path / name), *extra]) == 0
        assert any((tmp_path / name / "cache").iterdir())
        with open(tmp_path / name / "report.csv") as f:
            rows = list(csv.DictReader(f))
        tables[name] = [[r.pop("model"), r.pop("dataset"), r.pop("within_noise")]
                        for r in rows], \
            np.array([[float(v) for v in r.values()] for r in rows])
    cache.clear_memory()
    for name in ("workers", "scheduler"):
        assert tables[name][0] == tables["local"][0]
        np.testing.assert_allclose(tables[name][1], tables["local"][1], rtol=1e-9)


def test_report_rejects_bad_cluster_flags(capsys):
    assert cli.main(["report", "--workers", "0", "--no-plot"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert cli.main(["report", "--workers", "2", "--scheduler", "tcp://x:1", "--no-plot"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_killed_worker_is_retried_and_the_result_is_exact(tiny_llama, address):
    # Last in the module: the killed worker's replacement starts while the module ends.
    texts = TEXTS * 2
    expected = single_process(tiny_llama, texts, batch_size=1)
    client = get_client(address)
    victim, pid = min(client.run(os.getpid).items())
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(sharded_statistics, tiny_llama, texts, scheduler=address,
                          n_shards=len(texts), batch_size=1, progress=False)
        deadline = time.monotonic() + 60
        # Wait until the victim runs a shard, then kill it without warning.
        while not any(str(k).startswith("_shard") for k in client.processing().get(victim, ())):
            assert time.monotonic() < deadline and not job.done(), "no shard reached the victim"
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        assert not job.done()
        got = job.result(timeout=120)
    assert_same_statistics(got, expected)
