"""Fixtures shared by the test modules; the builders they use live in builders.py."""

import pytest

from builders import FUZZ_STATS, make_texts, make_tiny_bert, make_tiny_llama, require_bundled


@pytest.fixture
def texts():
    return make_texts()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers")
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("transformers")
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def wide_llama(tmp_path_factory):
    pytest.importorskip("transformers")
    # wide enough that its weights dwarf a rank-2 adapter
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "wide-llama", hidden_size=64)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Keep every cache of the test session (de-quantised models too) out of the user's home."""
    import os

    before = os.environ.get("SKLEARN_NTPS_CACHE")
    os.environ["SKLEARN_NTPS_CACHE"] = str(tmp_path_factory.mktemp("ntps-cache"))
    yield
    if before is None:
        os.environ.pop("SKLEARN_NTPS_CACHE", None)
    else:
        os.environ["SKLEARN_NTPS_CACHE"] = before


@pytest.fixture
def ntps_cache(monkeypatch, tmp_path):
    """A private embedding cache and an empty in-memory one for one test."""
    from sklearn_ntps.states import cache, embedding

    folder = tmp_path / "ntps-cache"
    monkeypatch.setattr(embedding, "cache_dir", lambda: folder)
    cache.clear_memory()
    yield folder
    cache.clear_memory()


@pytest.fixture(scope="session")
def smollm2_layer15():
    """SmolLM2's layer-15 moments of 120 BANKING77 texts (the issue's measurement)."""
    pytest.importorskip("transformers")
    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.datasets import load_dataset

    require_bundled("SmolLM2-135M")
    data = load_dataset("banking77", split="train", n_samples=120, random_state=0)
    moments = HFEmbeddingTransformer(output="tokens", layer=15, progress=False).fit_transform(
        data.data)
    return moments, data.target


# ------------------------------------------------------------------ fuzzing
# Hypothesis settings of tests/test_fuzz.py. "ci", the default, runs about 10,000
# generated cases in all, derandomized (the same cases every run); set
# HYPOTHESIS_PROFILE=quick for a tenth. The session prints the count and the time.

try:
    from hypothesis import HealthCheck
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # tests/test_fuzz.py skips itself
    pass
else:
    _FUZZ_SETTINGS = {
        "deadline": None, "derandomize": True, "database": None, "print_blob": False,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                  HealthCheck.filter_too_much],
    }
    _hypothesis_settings.register_profile("ci", max_examples=2400, **_FUZZ_SETTINGS)
    _hypothesis_settings.register_profile("quick", max_examples=240, **_FUZZ_SETTINGS)
    import os as _os

    _hypothesis_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_logreport(report):
    if report.when == "call" and "test_fuzz.py" in report.nodeid:
        FUZZ_STATS["seconds"] += report.duration


def pytest_terminal_summary(terminalreporter):
    if FUZZ_STATS["cases"]:
        terminalreporter.write_sep(
            "-", f"fuzz: {FUZZ_STATS['cases']} generated cases ({FUZZ_STATS['calls']} API calls, "
                 f"{FUZZ_STATS['scored']} scored normally) in {FUZZ_STATS['seconds']:.1f} s")


def pytest_configure(config):
    # pytest-cov registers it too; without pytest-cov the mark is a no-op, not a warning.
    config.addinivalue_line("markers", "no_cover: run this test without coverage tracing")


# What a doctest calls to load a model; one that also names a bundled (real) model runs it.
_LOADERS = ("HFEmbeddingTransformer(", "LayerSelector(", "HFLoRAClassifier(", "load_model(",
            "extract_statistics(")


def _runs_a_real_model(item):
    """Whether a doctest (of a module, README.md or docs/*.md) loads a bundled model: one of its
    examples not skipped names one, and one calls a loader."""
    import doctest

    from sklearn_ntps.states.models import BUNDLED_MODELS

    examples = [e for e in getattr(getattr(item, "dtest", None), "examples", ())
                if not e.options.get(doctest.SKIP)]
    return any(f'"{name}"' in e.source for e in examples for name in BUNDLED_MODELS) and \
        any(loader in e.source for e in examples for loader in _LOADERS)


def pytest_collection_modifyitems(config, items):
    # Doctests carry no marks of their own: the ones that run a real model are slow too, so
    # that -m "not slow" runs without the bundled models (CONTRIBUTING.md). This conftest sees
    # every item when the run collects tests/ (the default testpaths do).
    for item in items:
        if _runs_a_real_model(item):
            item.add_marker(pytest.mark.slow)
    if config.getoption("no_cov", default=False):
        # With --no-cov there is nothing to pause, and pytest-cov 7.1 pauses a controller it
        # never made (AttributeError on every no_cover test): drop the mark instead.
        for item in items:
            for node in item.listchain():
                node.own_markers[:] = [m for m in node.own_markers if m.name != "no_cover"]
