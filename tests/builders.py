"""Builders the test modules share: tiny random models, texts for them, the estimator registry.

Imported by the tests and by conftest.py (``from builders import ...``); no test
module imports another.
"""

from pathlib import Path

import numpy as np

from sklearn_ntps.datasets import make_token_states

TINY_WORDS = ["<unk>", "<s>", "</s>", *(
    "the a bank card money transfer my i want to how do you is not yet arrived why was "
    "declined please help with account top up cash fee spam free win prize call now text "
    "reply stop hello what when where who movie good bad plot film great boring"
).split()]

# Short texts of the tiny models' words, with labels: what most model tests run on.
TEXTS = [
    "my card was declined why",
    "how do i transfer money to my account",
    "the film was good",
    "hello",
    "please help with my bank card it has not arrived yet and i want to top up cash",
    "free prize call now",
    "what is the fee to top up",
    "boring movie bad plot",
]
LABELS = [0, 0, 1, 0, 0, 1, 0, 1]

# scikit-learn's checks that need no data: every estimator passes them, whatever it takes.
DATA_FREE_CHECKS = [
    "check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
    "check_estimator_repr", "check_no_attributes_set_in_init", "check_get_params_invariance",
    "check_set_params", "check_do_not_raise_errors_in_init_or_set_params",
    "check_parameters_default_constructible", "check_mixin_order",
]

# Counters of tests/test_fuzz.py, printed by conftest.py at the end of the session.
FUZZ_STATS = {"cases": 0, "calls": 0, "seconds": 0.0, "scored": 0}


def class_separation(features, codes):
    """A toy score for FunctionScorer: the share of the features' variance between classes."""
    means = np.stack([features[codes == c].mean(axis=0) for c in np.unique(codes)])
    between = np.sum(np.bincount(codes)[:, None] * (means - features.mean(axis=0)) ** 2)
    total = np.sum((features - features.mean(axis=0)) ** 2)
    return float(between / total) if total > 0 else 0.0


def registry():
    """Every estimator of the package, once, in a typical configuration: what
    tests/test_common.py checks. The scores come from the package's score registry, so a
    registered score is checked too; a new estimator of another kind is added here."""
    from sklearn_ntps import (
        FunctionScorer,
        HFEmbeddingTransformer,
        LayerSelector,
        NTPSScorer,
        NTPSSubspaceProbe,
    )
    from sklearn_ntps.scores.registry import registered_scores

    scores = [entry.scorer for entry in registered_scores().values()]
    # The scores that read pooled features take a 2-D matrix: every data-driven check applies.
    peers = [s for s in scores if s._reads == "pooled"]
    peers.append(FunctionScorer(score_func=class_separation))
    scorers = [NTPSScorer(), NTPSScorer(variant="paper", centering=True,
                                        shrinkage="ledoit-wolf"), NTPSSubspaceProbe()]
    on_texts = [HFEmbeddingTransformer(), LayerSelector()]
    try:
        from sklearn_ntps import HFLoRAClassifier
    except ImportError:  # the [lora] extra is not installed
        pass
    else:
        on_texts.append(HFLoRAClassifier())
    return {"peers": peers, "scorers": [*scorers, *peers], "on_texts": on_texts}


# The two architectures the tiny models come in: Llama (a decoder; its tokenizer has no pad
# token) and BERT (an encoder, with one).
_ARCHITECTURES = {
    "llama": {"config": "LlamaConfig", "model": "LlamaModel", "special": ["<unk>", "<s>", "</s>"],
              "tokens": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
              "config_kwargs": {"num_key_value_heads": 2}},
    "bert": {"config": "BertConfig", "model": "BertModel",
             "special": ["[UNK]", "[PAD]", "[CLS]", "[SEP]"],
             "tokens": {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                        "sep_token": "[SEP]"},
             "config_kwargs": {"pad_token_id": 1}},
}


def make_tiny_model(path, *, architecture="llama", hidden_size=16, n_layers=2, seed=0):
    """Save a random model of ``architecture`` and a word-level tokenizer of ``TINY_WORDS``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    arch = _ARCHITECTURES[architecture]
    words = arch["special"] + TINY_WORDS[3:]
    unk = arch["tokens"]["unk_token"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **arch["tokens"])
    config = getattr(transformers, arch["config"])(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=n_layers,
        num_attention_heads=2, vocab_size=len(words), max_position_embeddings=64,
        **arch["config_kwargs"],
    )
    torch.manual_seed(seed)
    getattr(transformers, arch["model"])(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def make_tiny_llama(path, **kwargs):
    """Save a random Llama and a word-level tokenizer without a pad token."""
    return make_tiny_model(path, architecture="llama", **kwargs)


def make_tiny_bert(path, **kwargs):
    """Save a random BertModel and a word-level tokenizer with a pad token."""
    return make_tiny_model(path, architecture="bert", **kwargs)


def make_texts(n_texts=200, n_features=8, *, n_classes=3, min_len=1, max_len=12, seed=0):
    """Random per-text token states with random lengths, and labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_texts)
    X = [rng.normal(size=(t, n_features)) for t in lengths]
    y = rng.integers(0, n_classes, size=n_texts)
    y[:n_classes] = np.arange(n_classes)
    return X, y


def make_block_texts(signal, *, n_texts=300, a=4, b=4, n_classes=3, seed=0, mirror=False):
    """Token states with a known amount of label signal in the predictable block."""
    return make_token_states(
        signal, n_texts=n_texts, n_predictable=a, n_noise=b, n_classes=n_classes,
        mirror=mirror, random_state=seed,
    )


def make_order_blind_llama(path, **kwargs):
    """A tiny Llama whose attention adds nothing (every ``o_proj`` weight is zero).

    Each token's hidden state then depends on that token alone, at every
    layer, so mean-pooled states are the same for "good plot" and "plot good":
    a frozen probe cannot tell word order, an adapter on ``o_proj`` can learn to.
    """
    import torch
    import transformers

    make_tiny_llama(path, **kwargs)
    model = transformers.LlamaModel.from_pretrained(path)
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.o_proj.weight.zero_()
    model.save_pretrained(path)
    return str(path)


def require_bundled(name):
    """Skip the calling test when the bundled model ``name`` is not installed."""
    import pytest

    from sklearn_ntps.states.models import resolve_model

    try:
        resolve_model(name)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        pytest.skip(f"{name} is not installed: {exc}")


def cv_by_hand(model, texts, labels, cv, estimator, **params):
    """Each split's score by hand: ``estimator`` fitted on the moments of the training texts
    (``HFEmbeddingTransformer(output="tokens", **params)`` of ``model``), then scoring the
    moments of the test texts. What a Pipeline of the two under ``cross_val_score`` must give."""
    from sklearn.base import clone

    from sklearn_ntps import HFEmbeddingTransformer

    labels = np.asarray(labels)

    def moments(idx):
        return HFEmbeddingTransformer(model_name_or_path=model, output="tokens", progress=False,
                                      **params).fit_transform([texts[i] for i in idx])

    return [clone(estimator).fit(moments(train), labels[train]).score(moments(test), labels[test])
            for train, test in cv.split(texts, labels)]


DOCS = Path(__file__).parent.parent / "docs"


def run_docs_script(name):
    """A module-scoped fixture's body: docs/<name> run as a module (``runpy.run_path``),
    its namespace yielded. The study scripts load their sibling modules by path
    themselves; nothing is put on sys.path."""
    import runpy

    yield runpy.run_path(str(DOCS / name))


def docs_module(name):
    """docs/<name>.py (a study's tables module, say) as a module, loaded from its path."""
    from sklearn_ntps.evidence.provenance import study_module

    return study_module(DOCS / f"{name}.py", name)


BANK = ["my card was declined", "why was my transfer declined", "money transfer not arrived yet",
        "top up cash fee", "how do i top up my account", "my card is not working", "bank fee why",
        "i want to transfer money"]
FILM = ["the film was great", "a boring movie", "good plot", "bad film with a boring plot",
        "great movie", "what a good film", "the plot was bad", "a great boring movie"]
LORA_TEXTS = BANK + FILM
LORA_LABELS = np.array(["bank"] * len(BANK) + ["film"] * len(FILM))
# Sixteen short texts of two topics for the LoRA tests, and settings that train in a second
# (without early stopping, so that a test's max_steps are the steps taken).
FAST_LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, batch_size=4, learning_rate=1e-2,
                 head_learning_rate=1e-2, warmup=0, progress=False, n_iter_no_change=None,
                 head_init="probe")
