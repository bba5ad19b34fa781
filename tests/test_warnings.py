"""sklearn_ntps._warnings: a warning points at the user's line, past the library's frames and
those of scikit-learn, tqdm or joblib calling into it on the user's behalf."""

import inspect
import warnings
from pathlib import Path

import pytest

from sklearn_ntps import _warnings
from sklearn_ntps._warnings import warn_at_caller


def compiled_in(filename, callee=warn_at_caller):
    """A function that calls ``callee`` (warn_at_caller), as if its code lived in ``filename``."""
    namespace = {"callee": callee}
    source = "def warns(message, category=UserWarning):\n    callee(message, category)\n"
    exec(compile(source, str(filename), "exec"), namespace)
    return namespace["warns"]


def caught(call):
    """``call()``'s one warning, and the line of this file it was called from."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_back.f_lineno
        call()
    assert len(record) == 1
    return record[0], line


def test_the_warning_points_at_the_callers_line():
    w, line = caught(lambda: warn_at_caller("plain", RuntimeWarning))
    assert (w.filename, w.lineno) == (__file__, line)
    assert w.category is RuntimeWarning and str(w.message) == "plain"


@pytest.mark.parametrize("inside", [
    Path(_warnings.__file__).parent / "scores" / "estimators.py",  # the library
    Path("/env/lib/site-packages/sklearn/pipeline.py"),            # scikit-learn on our behalf
    Path("/env/lib/site-packages/tqdm/std.py"),
    Path("/env/lib/site-packages/joblib/parallel.py"),
])
def test_frames_of_the_library_and_its_callers_are_skipped(inside):
    library = compiled_in(inside)
    w, line = caught(lambda: library("from inside"))
    assert (w.filename, w.lineno) == (__file__, line)
    # Two such frames deep, the same line.
    outer = compiled_in(inside, callee=library)
    w, line = caught(lambda: outer("deeper"))
    assert (w.filename, w.lineno) == (__file__, line)


@pytest.mark.parametrize("filename, internal", [
    (str(Path(_warnings.__file__).parent / "states" / "cache.py"), True),
    ("/env/lib/site-packages/sklearn/base.py", True),
    ("/env/lib/site-packages/tqdm/auto.py", True),
    ("/env/lib/site-packages/joblib/parallel.py", True),
    ("/home/me/sklearn_tools/run.py", False),   # a folder named like sklearn is not sklearn
    ("/home/me/notebook.py", False),
    ("<stdin>", False),
])
def test_internal_frames(filename, internal):
    assert _warnings._internal(filename) is internal
