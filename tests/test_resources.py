"""Sizing a run before it starts: memory and disk for its statistics."""

import pytest

from sklearn_ntps.states import resources


def test_statistics_nbytes_counts_every_array_of_a_cache_entry():
    import numpy as np

    from sklearn_ntps.states.moments import MomentAccumulator

    acc = MomentAccumulator(pooling=("mean", "last"))
    acc.update(np.ones((3, 10, 4), dtype=np.float32), [4, 6])
    arrays = acc.statistics().to_arrays()
    stored = sum(v.nbytes for v in arrays.values() if isinstance(v, np.ndarray))
    assert resources.statistics_nbytes(3, 4, 2) == stored
    assert resources.statistics_nbytes(3, 4, 2, with_moments=False) == \
        arrays["pooled_mean"].nbytes + arrays["pooled_last"].nbytes


def test_check_resources_names_the_figure_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 6 * 10**9)
    monkeypatch.setattr(resources, "free_disk", lambda folder: 100 * 10**9)
    with pytest.raises(resources.ResourceError, match=r"33 layers of d=4096 .* need 8\.9 GB in "
                       r"memory \(2 x L x d\^2 x 8 .*6\.0 GB is available; pass "
                       r"layers=\[\.\.\.\] .*output='pooled'"):
        resources.check_resources(33, 4096, 10, folder=tmp_path)
    with pytest.raises(MemoryError, match="available; use a smaller model"):
        resources.check_resources(33, 4096, 10, advice="use a smaller model.")
    assert resources.check_resources(33, 4096, 10, with_moments=False, folder=tmp_path) < 10**8
    monkeypatch.setattr(resources, "available_memory", lambda: None)  # unknown: no memory check
    assert resources.check_resources(33, 4096, 10) > 8 * 10**9
    monkeypatch.setattr(resources, "free_disk", lambda folder: 9 * 10**9)
    with pytest.raises(ValueError, match=r"need 8\.9 GB in the cache .*9\.0 GB free.*cache "
                       "clear.*cache=False"):
        resources.check_resources(33, 4096, 10, folder=tmp_path)
    assert resources.check_resources(33, 4096, 10) > 0  # no folder: no disk check


def test_free_memory_and_disk_are_measured(tmp_path):
    free = resources.available_memory()
    assert free is None or free > 0
    assert resources.free_disk(tmp_path / "not" / "yet") > 0
