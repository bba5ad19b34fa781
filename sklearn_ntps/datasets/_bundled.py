"""Loaders for the data sets shipped inside this package (nothing to install)."""

from . import _descr
from ._base import _check_options, _make_dataset, _read_bundled_csv


def load_banking77(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load BANKING77: online-banking queries labelled with 77 intents.

    The whole data set (13,083 queries, CC BY 4.0) ships with this package;
    13,072 distinct texts remain after cleaning. Classes are ordered by name.

    Parameters
    ----------
    split : {"train", "test", "all"}, default="train"
        Which part to return. "train" and "test" come from one stratified,
        seeded split of the cleaned data, so they never share a text and
        together make up "all".
    test_size : float, default=0.25
        Fraction of the cleaned data that goes to the test split, in (0, 1).
    random_state : int, default=0
        Seed of the split and of the ``n_samples`` subsample. Use the same
        value for the train and the test call.
    n_samples : int, default=None
        If given, return a stratified, seeded subsample of that many texts of
        the chosen split (handy for quick runs).
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes ``data`` (list of str),
        ``target`` (ndarray of int, shape (n_texts,)), ``target_names``
        (list of str, ``target_names[target[i]]`` is the label of
        ``data[i]``) and ``DESCR`` (str: source, licence, attribution and
        what cleaning removed).
    (data, target) : tuple
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_banking77
    >>> X, y = load_banking77(return_X_y=True, split="train", n_samples=100)
    >>> len(X)
    100
    >>> bunch = load_banking77(split="test")
    >>> len(bunch.target_names)
    77
    >>> bunch.target_names[:2]
    ['Refund_not_showing_up', 'activate_my_card']
    """
    _check_options(split, test_size, random_state, n_samples)
    rows = _read_bundled_csv("banking77.tsv.gz", dialect="excel-tab")
    if rows[0] != ("text", "label"):
        raise ValueError(f"unexpected header in banking77.tsv.gz: {rows[0]}")
    texts, labels = zip(*rows[1:])
    return _make_dataset(
        texts, labels, _descr.BANKING77, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_sms_spam(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load the SMS Spam Collection: text messages labelled ham or spam.

    The copy shipped with this package (4,837 messages, CC BY 4.0) has 4,512
    distinct texts after cleaning, 12% of them spam. ``target_names`` is
    ``["ham", "spam"]``, so spam is the positive class 1.

    Parameters
    ----------
    split : {"train", "test", "all"}, default="train"
        Which part to return. "train" and "test" come from one stratified,
        seeded split of the cleaned data, so they never share a text and
        together make up "all".
    test_size : float, default=0.25
        Fraction of the cleaned data that goes to the test split, in (0, 1).
    random_state : int, default=0
        Seed of the split and of the ``n_samples`` subsample. Use the same
        value for the train and the test call.
    n_samples : int, default=None
        If given, return a stratified, seeded subsample of that many texts of
        the chosen split (handy for quick runs).
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes ``data`` (list of str),
        ``target`` (ndarray of int, shape (n_texts,)), ``target_names``
        (list of str, ``target_names[target[i]]`` is the label of
        ``data[i]``) and ``DESCR`` (str: source, licence, attribution and
        what cleaning removed).
    (data, target) : tuple
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_sms_spam
    >>> bunch = load_sms_spam(split="all")
    >>> bunch.target_names
    ['ham', 'spam']
    >>> len(bunch.data)
    4512
    >>> X, y = load_sms_spam(return_X_y=True, n_samples=50)
    >>> len(X), int(y.sum())
    (50, 6)
    """
    _check_options(split, test_size, random_state, n_samples)
    rows = _read_bundled_csv("sms_spam.csv.gz")
    if rows[0] != ("spam", "text"):
        raise ValueError(f"unexpected header in sms_spam.csv.gz: {rows[0]}")
    names = {"0": "ham", "1": "spam"}
    labels = [names[spam] for spam, _ in rows[1:]]
    texts = [text for _, text in rows[1:]]
    return _make_dataset(
        texts, labels, _descr.SMS_SPAM, target_names=["ham", "spam"], split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )
