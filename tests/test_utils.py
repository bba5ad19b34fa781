"""sklearn_ntps._utils: where files go, how they are written, what to install, how many BLAS
threads the solver gets, when tasks reach worker processes. Known answers, on temporary
folders."""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from joblib import delayed

from sklearn_ntps._utils import (
    atomic_dir,
    cache_dir,
    csv_text,
    discard_dir,
    finite_json,
    format_bytes,
    json_text,
    log_grid,
    optional_import,
    results_as_read,
    sync_folder,
    worker_pool,
    write_atomic,
)


def test_log_grid():
    assert log_grid(-1, 1, 3) == (0.1, 1.0, 10.0)
    assert log_grid(2, 2, 1) == (100.0,)
    grid = log_grid(0, 2, 5)  # 10 ** (0, 0.5, 1, 1.5, 2)
    assert grid[0::2] == (1.0, 10.0, 100.0)
    assert grid[1] == pytest.approx(math.sqrt(10), rel=1e-15)
    assert grid[3] == pytest.approx(10 * math.sqrt(10), rel=1e-15)
    assert log_grid(3, -3, 7) == (1000.0, 100.0, 10.0, 1.0, 0.1, 0.01, 0.001)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLEARN_NTPS_CACHE", "~/ntps")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "home" / "ntps"
    monkeypatch.delenv("SKLEARN_NTPS_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "sklearn-ntps"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "sklearn-ntps"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "sklearn-ntps"
    assert not (tmp_path / "home").exists()  # not created


def test_optional_import_names_the_extra():
    assert optional_import("json", "hf", "Reading JSON") is json
    assert optional_import("json", "hf", "Reading JSON", check_only=True) is None
    with pytest.raises(ImportError) as info:
        optional_import("no_such_module", "dask", "Sharding on Dask",
                        alternative=" or pass --no-plot")
    assert str(info.value) == ("Sharding on Dask needs no_such_module: pip install "
                               "'sklearn-ntps[dask]' or pass --no-plot.")
    with pytest.raises(ImportError) as info:
        optional_import("no_such_module", "lora", "HFLoRAClassifier", check_only=True)
    assert str(info.value) == ("HFLoRAClassifier needs no_such_module: pip install "
                               "'sklearn-ntps[lora]'.")


def test_write_atomic_writes_all_or_nothing(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(path, "first")
    write_atomic(path, b"second \xff")
    assert path.read_bytes() == b"second \xff"
    with pytest.raises(TypeError):
        write_atomic(path, 3)  # neither str nor bytes: nothing is written
    assert path.read_bytes() == b"second \xff" and os.listdir(tmp_path) == ["out.txt"]


def test_csv_text():
    text = csv_text(["b", "a"], [{"a": 1, "b": "x,y", "c": 0}, {"a": 2.5}])
    assert text == 'b,a\n"x,y",1\n,2.5\n'


def test_finite_json_and_json_text():
    value = {"a": [np.float64(0.5), float("nan"), -math.inf], "b": (np.int64(3), np.array(2.0)),
             "c": {"d": np.bool_(True), "e": None, "f": "text"}}
    assert finite_json(value) == {"a": [0.5, None, None], "b": [3, 2.0],
                                  "c": {"d": True, "e": None, "f": "text"}}
    assert type(finite_json(np.int64(3))) is int and type(finite_json(np.float32(0.5))) is float
    assert json_text({"x": [1, float("nan")]}) == '{\n  "x": [\n    1,\n    null\n  ]\n}'


def test_atomic_dir_replaces_only_when_asked(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "theirs").write_text("1")
    asked = []
    with atomic_dir(target, replace=lambda t: asked.append(t) or True) as tmp:
        (tmp / "ours").write_text("2")
    assert asked == [target] and os.listdir(target) == ["ours"]
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary or discarded folder left
    with atomic_dir(target, durable=True, replace=lambda t: False) as tmp:
        (tmp / "third").write_text("3")
    assert os.listdir(target) == ["ours"]


def test_discard_dir_and_sync_folder(tmp_path):
    folder = tmp_path / "entry"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "file").write_text("x")
    sync_folder(folder)
    discard_dir(folder)
    assert os.listdir(tmp_path) == []
    discard_dir(folder)  # gone already: nothing to do, no error
    discard_dir(tmp_path / "no" / "parent")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1500, "1.5 kB"), (2.5e6, "2.5 MB"),
    (8.9e9, "8.9 GB"), (3e12, "3.0 TB"), (4e15, "4000.0 TB"), (-2000, "-2.0 kB"),
    (math.inf, "unlimited"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_atomic_dir_leaves_a_whole_folder_or_none(tmp_path):
    target = tmp_path / "copies" / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half-written").write_text("x")
            raise RuntimeError("interrupted")
    assert os.listdir(target.parent) == []
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert os.listdir(target.parent) == ["model"] and os.listdir(target) == ["config.json"]
    with atomic_dir(target) as tmp:  # another process got there first: keep its copy
        (tmp / "other").write_text("y")
    assert os.listdir(target.parent) == ["model"] and os.listdir(target) == ["config.json"]



def test_one_blas_pool_puts_numpys_blas_on_one_thread_and_restores_it():
    from threadpoolctl import threadpool_info

    from sklearn_ntps._utils import _numpy_blas_beside_scipys, one_blas_pool

    def threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()}

    before = threads()
    with one_blas_pool():
        inside = threads()
    assert threads() == before
    limited = _numpy_blas_beside_scipys()
    mine = set() if limited is None else {lib.filepath for lib in limited.lib_controllers}
    assert all(inside[path] == (1 if path in mine else before[path]) for path in before)
    # pip's wheels bundle one OpenBLAS each in numpy.libs and scipy.libs.
    if any("numpy.libs" in path for path in before) and any("scipy.libs" in p for p in before):
        assert mine and all("numpy.libs" in path for path in mine)


def test_nested_and_concurrent_fits_restore_the_blas_threads_when_the_last_one_leaves():
    import threading

    from threadpoolctl import threadpool_info

    from sklearn_ntps._utils import _numpy_blas_beside_scipys, one_blas_pool

    def threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()}

    before = threads()
    numpy_blas = _numpy_blas_beside_scipys()
    mine = set() if numpy_blas is None else {lib.filepath for lib in numpy_blas.lib_controllers}
    with one_blas_pool():
        with one_blas_pool():
            pass
        # The inner fit left; the outer one still holds the limit.
        assert all(n == (1 if path in mine else before[path]) for path, n in threads().items())
    assert threads() == before
    inside, leave = threading.Barrier(3), threading.Event()

    def fit():
        with one_blas_pool():
            inside.wait()
            leave.wait()

    workers = [threading.Thread(target=fit) for _ in range(2)]
    for w in workers:
        w.start()
    inside.wait()
    leave.set()
    for w in workers:
        w.join()
    assert threads() == before


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_task_runs_while_the_next_is_computed(tmp_path, n_jobs):
    started, seen = tmp_path / "the first task ran", []

    def tasks():  # the report's: a layer's probe, then the next layer's scores, and so on
        yield delayed(Path.touch)(started)
        deadline = time.monotonic() + 60  # joblib's Parallel never ran it before the end
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(started.exists())
        yield delayed(len)("ab")

    with worker_pool(n_jobs) as pool:
        assert list(results_as_read(tasks(), pool)) == [None, 2]
    assert seen == [True]



@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failing_task_raises_where_its_result_is_read(n_jobs):
    with worker_pool(n_jobs) as pool, pytest.raises(ZeroDivisionError):
        list(results_as_read([delayed(len)("ab"), delayed(divmod)(1, 0)], pool))
