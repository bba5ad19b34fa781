"""Text-classification data sets, loaded scikit-learn style.

Each loader returns a :class:`~sklearn.utils.Bunch` with ``data`` (list of
str), ``target`` (int array), ``target_names`` and ``DESCR``, or ``(X, y)``
with ``return_X_y=True``. Texts are deduplicated before a stratified, seeded
train/test split, so the two splits never share a text.

BANKING77 and the SMS Spam Collection ship with this package. CLINC150, TREC
and Rotten Tomatoes are read from other installed packages; the error raised
when one is missing gives the ``pip install`` command.
"""

from ._bundled import load_banking77, load_sms_spam
from ._external import load_clinc150, load_rotten_tomatoes, load_trec
from ._registry import DATASETS, load_dataset
from ._synthetic import make_token_states

__all__ = [
    "DATASETS",
    "load_banking77",
    "load_clinc150",
    "load_dataset",
    "load_rotten_tomatoes",
    "load_sms_spam",
    "load_trec",
    "make_token_states",
]
