"""The statistics store on disk: crash safety, concurrent writers, the size cap."""

import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from sklearn_ntps.states import cache

# The child loads cache.py (and the _utils and _warnings helpers it imports) without
# the package's heavy __init__, so that it starts in a blink.
CHILD = """
import importlib.util, sys, types
from pathlib import Path
import numpy as np
package = types.ModuleType("sklearn_ntps")
package.__path__ = [str(Path({cache_py!r}).parent)]
sys.modules["sklearn_ntps"] = package
spec = importlib.util.spec_from_file_location("sklearn_ntps.states.cache", {cache_py!r})
cache = importlib.util.module_from_spec(spec)
sys.modules["sklearn_ntps.states.cache"] = cache
spec.loader.exec_module(cache)
folder, name = Path(sys.argv[1]), sys.argv[2]
arrays = dict(np.load(sys.argv[3]))
print("ready", flush=True)
for line in sys.stdin:  # "1": store with the moments, "0": without
    full = line.strip() == "1"
    stats = dict(arrays, n_pairs=1234, precision=2.0**-24, n_truncated=0)
    if not full:
        stats = {{k: v for k, v in stats.items() if k.startswith("pooled") or k == "precision"
                  or k == "n_truncated"}}
    out = cache.store(folder, name, stats)
    print("done", "ok" if not full or "c0" in out else "lost the moments", flush=True)
"""


def make_stats(*, with_moments=True, n_layers=6, n_texts=300, d=256, seed=0):
    """Statistics shaped like a real extraction's: about 14 MB in 5 arrays."""
    rng = np.random.default_rng(seed)
    stats = {"pooled_mean": rng.normal(size=(n_layers, n_texts, d)),
             "pooled_last": rng.normal(size=(n_layers, n_texts, d)),
             "precision": 2.0**-24, "n_truncated": 0}
    if with_moments:
        stats.update(c0=rng.normal(size=(n_layers, d, d)), c1=rng.normal(size=(n_layers, d, d)),
                     first=rng.normal(size=(n_layers, 2, d)), n_pairs=1234)
    return stats


def same(found, expected):
    assert found.keys() == expected.keys()
    for k, v in expected.items():
        assert np.array_equal(found[k], v) if isinstance(v, np.ndarray) else found[k] == v, k


def strict_lookup(folder, name):
    """A lookup from disk that fails the test on any warning or exception."""
    cache.clear_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cache.lookup(folder, name)


@pytest.fixture
def child(tmp_path):
    """Start writer processes: ``child(folder, name)`` -> a ready Popen."""
    arrays = {k: v for k, v in make_stats().items() if isinstance(v, np.ndarray)}
    np.savez(tmp_path / "arrays.npz", **arrays)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(cache_py=cache.__file__))
    started = []

    def start(folder, name):
        proc = subprocess.Popen([sys.executable, str(script), str(folder), name,
                                 str(tmp_path / "arrays.npz")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True,
                                env={**os.environ, cache.MAX_BYTES_ENV: "none"})
        started.append(proc)
        assert proc.stdout.readline() == "ready\n"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def _empty_memory():
    cache.clear_memory()
    yield
    cache.clear_memory()


def test_sigkill_during_a_write_leaves_a_whole_entry_or_none(tmp_path, child, capsys):
    reference = {}
    for full in (True, False):
        cache.store(tmp_path / f"ref{full}", "k", make_stats(with_moments=full))
        reference[full] = strict_lookup(tmp_path / f"ref{full}", "k")
    folder = tmp_path / "cache"
    durations = []
    for _ in range(3):
        shutil.rmtree(folder, ignore_errors=True)
        proc = child(folder, "k")
        start = time.perf_counter()
        proc.stdin.write("1\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "done ok\n"
        durations.append(time.perf_counter() - start)
    write_time = max(durations)  # the slowest: a busy machine stretches every write
    rng = np.random.default_rng(0)
    outcomes = {"miss": 0, "new entry": 0, "old entry kept": 0, "killed before the rename": 0}
    for i in range(30):
        shutil.rmtree(folder, ignore_errors=True)
        replacing = i % 2 == 1  # half the kills hit the swap of an entry without moments
        if replacing:
            cache.store(folder, "k", make_stats(with_moments=False))
        proc = child(folder, "k")
        proc.stdin.write("1\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0, write_time))
        proc.kill()
        proc.wait()
        outcomes["killed before the rename"] += any(p.name.startswith(".tmp-")
                                                    for p in folder.iterdir())
        found = strict_lookup(folder, "k")
        if found is None:
            outcomes["miss"] += 1
        elif "c0" in found:
            same(found, reference[True])
            outcomes["new entry"] += 1
        else:
            assert replacing
            same(found, reference[False])
            outcomes["old entry kept"] += 1
        # The next store over whatever the kill left must work and be whole.
        cache.store(folder, "k", make_stats())
        same(strict_lookup(folder, "k"), reference[True])
    with capsys.disabled():
        print(f"\n30 kills within a write of {', '.join(f'{t:.3f}' for t in durations)} s: "
              f"{outcomes}")
    assert outcomes["killed before the rename"] > 0  # the kills did land inside writes
    cache.sweep(folder, stale=0)
    assert [p.name for p in folder.iterdir()] == ["k"]


def test_concurrent_writers_of_one_key_leave_one_valid_entry(tmp_path, child):
    reference = {}
    for full in (True, False):
        cache.store(tmp_path / f"ref{full}", "k", make_stats(with_moments=full))
        reference[full] = strict_lookup(tmp_path / f"ref{full}", "k")
    folder = tmp_path / "cache"
    workers = [child(folder, "k"), child(folder, "k")]
    for i in range(30):
        shutil.rmtree(folder, ignore_errors=True)
        modes = [("1", "1"), ("1", "0"), ("0", "1"), ("0", "0")][i % 4]
        for proc, mode in zip(workers, modes):
            proc.stdin.write(mode + "\n")
            proc.stdin.flush()
        assert [proc.stdout.readline() for proc in workers] == ["done ok\n"] * 2
        assert [p.name for p in folder.iterdir()] == ["k"]
        same(strict_lookup(folder, "k"), reference["1" in modes])


def test_moments_replace_an_entry_without_them_and_never_the_reverse(tmp_path):
    cache.store(tmp_path, "k", make_stats(with_moments=False, n_texts=5, d=4))
    assert "c0" not in strict_lookup(tmp_path, "k")
    cache.store(tmp_path, "k", make_stats(n_texts=5, d=4))
    assert "c0" in strict_lookup(tmp_path, "k")
    out = cache.store(tmp_path, "k", make_stats(with_moments=False, n_texts=5, d=4))
    assert "c0" in out and "c0" in strict_lookup(tmp_path, "k")
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("damage", ["truncate", "no manifest", "meta", "version"])
def test_damaged_entry_is_a_miss_then_replaced(tmp_path, damage):
    stats = make_stats(n_texts=5, d=4)
    cache.store(tmp_path, "k", stats)
    entry = tmp_path / "k"
    if damage == "truncate":
        os.truncate(entry / "c0.npy", 100)
    elif damage == "no manifest":
        (entry / "manifest.json").unlink()
    elif damage == "meta":
        (entry / "meta.json").write_text('{"n_pairs": 1}')
    else:
        manifest = json.loads((entry / "manifest.json").read_text())
        (entry / "manifest.json").write_text(json.dumps({**manifest, "version": 0}))
    cache.clear_memory()
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        assert cache.lookup(tmp_path, "k") is None
    cache.store(tmp_path, "k", stats)
    same(strict_lookup(tmp_path, "k"), stats)


def test_stale_temporary_folders_are_swept(tmp_path):
    stale, fresh = tmp_path / ".tmp-killed", tmp_path / ".tmp-writing"
    for path in (stale, fresh, tmp_path / ".old-killed"):
        path.mkdir()
        (path / "c0.npy").write_bytes(b"x" * 10)
    hour_ago = time.time() - 3600
    for path in (stale, stale / "c0.npy", tmp_path / ".old-killed",
                 tmp_path / ".old-killed" / "c0.npy"):
        os.utime(path, (hour_ago, hour_ago))
    cache.store(tmp_path, "k", {"a": np.zeros(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-writing", "k"]


def small(n=1000):
    return {"a": np.zeros(n), "n_truncated": 0}


def test_least_recently_used_entries_are_evicted_to_meet_the_cap(tmp_path):
    for name in "abc":
        cache.store(tmp_path, name, small(), max_bytes="none")
    size = cache.entries(tmp_path)[0].nbytes
    assert cache.lookup(tmp_path, "a") is not None  # a memory hit refreshes the disk entry too
    cache.clear_memory()
    assert cache.lookup(tmp_path, "b") is not None  # so does a disk hit
    assert [e.name for e in cache.entries(tmp_path)] == ["c", "a", "b"]
    cache.store(tmp_path, "d", small(), max_bytes=3 * size + size // 2)
    assert [e.name for e in cache.entries(tmp_path)] == ["a", "b", "d"]
    assert "c" not in cache._memory
    with pytest.warns(UserWarning, match="exceeds the cache cap"):
        cache.store(tmp_path, "huge", small(100_000), max_bytes=size)
    assert [e.name for e in cache.entries(tmp_path)] == ["huge"]


def test_cap_from_the_environment_unless_given(tmp_path, monkeypatch):
    cache.store(tmp_path, "x", small())
    size = cache.entries(tmp_path)[0].nbytes
    monkeypatch.setenv(cache.MAX_BYTES_ENV, str(2 * size))
    for name in "abc":
        cache.store(tmp_path, name, small())
    assert [e.name for e in cache.entries(tmp_path)] == ["b", "c"]
    cache.store(tmp_path, "d", small(), max_bytes="1G")
    assert len(cache.entries(tmp_path)) == 3
    monkeypatch.setenv(cache.MAX_BYTES_ENV, "lots")
    with pytest.warns(UserWarning, match="No cache eviction.*SKLEARN_NTPS_CACHE_MAX_BYTES"):
        cache.store(tmp_path, "e", small())
    assert strict_lookup(tmp_path, "e") is not None


@pytest.mark.parametrize("text, expected", [
    ("123", 123), ("500M", 5 * 10**8), ("10G", 10**10), ("10 GB", 10**10), ("1.5t", 15 * 10**11),
    ("8GiB", 8 << 30), ("64ki", 64 << 10), ("none", float("inf")), ("Unlimited", float("inf")),
    (0, 0), (2.5e9, 2_500_000_000),
])
def test_parse_size(text, expected):
    assert cache.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["10X", "-5", "", "G", -1, float("nan")])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="size"):
        cache.parse_size(bad)


def test_resolve_max_bytes(monkeypatch):
    monkeypatch.delenv(cache.MAX_BYTES_ENV, raising=False)
    assert cache.resolve_max_bytes() == cache.DEFAULT_MAX_BYTES == 20 * 10**9
    monkeypatch.setenv(cache.MAX_BYTES_ENV, "500M")
    assert cache.resolve_max_bytes() == 5 * 10**8
    assert cache.resolve_max_bytes("2G") == 2 * 10**9
    with pytest.raises(ValueError, match="cache_max_bytes"):
        cache.resolve_max_bytes(True)


def test_clear_older_than(tmp_path):
    for name in ("old", "new"):
        cache.store(tmp_path, name, small())
    ten_days_ago = time.time() - 10 * 86400
    os.utime(tmp_path / "old" / cache.USED, (ten_days_ago, ten_days_ago))
    assert cache.clear(tmp_path, older_than=5 * 86400)[0] == 1
    assert [e.name for e in cache.entries(tmp_path)] == ["new"]
    n, freed = cache.clear(tmp_path)
    assert n == 1 and freed > 8000 and cache.entries(tmp_path) == []
    assert cache.clear(tmp_path / "missing") == (0, 0)
