"""Warnings that point at the user's line, not at the library or scikit-learn inside it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

# Frames in these folders are skipped: the library itself, and what calls
# into it on the user's behalf (Pipeline, GridSearchCV, set_output wrappers, tqdm).
_PACKAGE = str(Path(__file__).parent)
_CALLERS = ("sklearn", "tqdm", "joblib")


def warn_at_caller(message: str, category=UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside the library.

    Python 3.12's ``skip_file_prefixes`` does this; 3.10 and 3.11 need the walk.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def _internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE) or any(p in Path(filename).parts for p in _CALLERS)
