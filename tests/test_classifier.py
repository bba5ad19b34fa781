"""HFLoRAClassifier on tiny random models: training, the scikit-learn contract, weights on disk."""

import pickle

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ntps.lora.adapters import resolve_target_modules
from sklearn_ntps.lora.classifier import HFLoRAClassifier
from sklearn_ntps.states.models import load_model

from builders import FAST_LORA as FAST
from builders import LORA_LABELS as LABELS
from builders import LORA_TEXTS as TEXTS


@pytest.fixture(scope="module")
def fitted(tiny_llama):
    return HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=12, random_state=0,
                            **FAST).fit(TEXTS, LABELS)


def states(model, tokenizer, texts=TEXTS[:4]):
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.stack(model(**batch, output_hidden_states=True).hidden_states)


# ---------------------------------------------------------------- training


def features(model, texts, layer=-1, pooling="mean", **kw):
    """The frozen pooled states the probe reads, by the embedding transformer's own path."""
    from sklearn_ntps import HFEmbeddingTransformer

    return HFEmbeddingTransformer(model_name_or_path=model, layer=layer, pooling=pooling,
                                  cache=False, progress=False, **kw).fit_transform(texts)


def test_a_few_steps_lower_the_training_loss(fitted):
    curve = fitted.loss_curve_
    assert curve.shape == (12,) and fitted.n_steps_ == fitted.best_step_ == 12
    assert curve[-4:].mean() < 0.7 * curve[:4].mean()
    lora_b = [w for k, w in fitted.adapter_weights_.items() if "lora_B" in k]
    assert len(lora_b) == 2 * 3 and all(np.abs(w).max() > 0 for w in lora_b)  # B starts at zero
    assert fitted.score(TEXTS, LABELS) > 0.8
    assert fitted.fit_time_ > 0 and fitted.validation_scores_ is None
    zeros = clone(fitted).set_params(head_init="zeros").fit(TEXTS, LABELS)
    assert zeros.loss_curve_[0] == pytest.approx(np.log(2), rel=1e-6)  # 1/2 for each class


@pytest.mark.parametrize("pooling, n_classes", [("mean", 2), ("last", 3)])
def test_at_step_zero_it_is_the_probe(tiny_llama, pooling, n_classes):
    from sklearn_ntps.choice.probe import default_probe

    y = LABELS if n_classes == 2 else np.arange(len(TEXTS)) % 3
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, layer=1, pooling=pooling, max_steps=0,
                           random_state=0, **FAST).fit(TEXTS, y)
    X = features(tiny_llama, TEXTS, layer=1, pooling=pooling)
    # the scaler folded into the head: the same logits from the raw pooled states
    np.testing.assert_allclose(clf.decision_function(TEXTS), clf.probe_.decision_function(X),
                               atol=1e-5)
    np.testing.assert_array_equal(clf.predict(TEXTS), clf.probe_.predict(X))
    reference = clone(default_probe()).fit(X, y)  # C cross-validated on the training texts
    assert clf.probe_C_ == np.ravel(reference[-1].C_)[0]
    assert clf.probe_train_accuracy_ == reference.score(X, y)
    assert clf.n_steps_ == 0 and clf.loss_curve_.shape == (0,)


def test_the_first_loss_is_the_probes_with_base_dropout_off(tiny_bert):
    from sklearn.metrics import log_loss

    # BERT's own dropout (0.1) is on in train mode; one batch of every text; LoRA's dropout
    # does not matter at step 0, where B is zero.
    params = dict(model_name_or_path=tiny_bert, max_steps=1, random_state=0,
                  **{**FAST, "batch_size": len(TEXTS), "lora_dropout": 0.5})
    clf = HFLoRAClassifier(**params).fit(TEXTS, LABELS)
    expected = log_loss(LABELS, clf.probe_.predict_proba(features(tiny_bert, TEXTS)))
    assert clf.loss_curve_[0] == pytest.approx(expected, abs=1e-5)
    noisy = HFLoRAClassifier(**params, base_dropout=True).fit(TEXTS, LABELS)
    assert abs(noisy.loss_curve_[0] - expected) > 1e-3


def test_label_smoothing_enters_the_training_loss(tiny_bert):
    params = dict(model_name_or_path=tiny_bert, max_steps=1, random_state=0,
                  **{**FAST, "batch_size": len(TEXTS)})
    clf = HFLoRAClassifier(**params, label_smoothing=0.3).fit(TEXTS, LABELS)
    log_p = np.log(clf.probe_.predict_proba(features(tiny_bert, TEXTS)))
    codes = np.searchsorted(clf.classes_, LABELS)
    # torch's smoothing: (1 - eps) of the target's loss, eps of the mean over the classes
    expected = np.mean(-0.7 * log_p[np.arange(len(codes)), codes] - 0.3 * log_p.mean(axis=1))
    assert clf.loss_curve_[0] == pytest.approx(expected, abs=1e-5)


def test_lora_beats_the_frozen_probe_where_word_order_decides(tmp_path):
    from builders import TINY_WORDS, make_order_blind_llama

    # "good plot" or "plot good": the same words, so the same mean-pooled frozen states; an
    # adapter on the attention output can learn the order and carry it to unseen words.
    model = make_order_blind_llama(tmp_path / "order-blind")
    words = [w for w in TINY_WORDS[3:] if w != "good"]

    def task(ws):
        return [f"good {w}" for w in ws] + [f"{w} good" for w in ws], ["before", "after"]

    (X_train, names), (X_test, _) = task(words[:34]), task(words[34:])
    y_train, y_test = np.repeat(names, 34), np.repeat(names, len(words) - 34)
    # The frozen probe learns nothing here, so its C is the smallest and the head starts near
    # zero, where the adapters get almost no gradient: the head must grow first, hence its
    # learning rate of 0.1. Over 14 seeds at 200 steps each seed scored 0.75-1.0 of 28 texts
    # (mean 0.93, SD 0.08), so the mean of three clears 0.75 by about four of its standard
    # deviations.
    accuracies = []
    for seed in range(3):
        clf = HFLoRAClassifier(model_name_or_path=model,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                               max_steps=200, random_state=seed,
                               **{**FAST, "batch_size": 8, "learning_rate": 3e-2,
                                  "head_learning_rate": 0.1})
        accuracies.append(clf.fit(X_train, y_train).score(X_test, y_test))
        probe = clf.probe_.score(features(model, X_test), y_test)
        assert probe == 0.5  # it cannot tell a text from its mirror image
    assert min(accuracies) > 0.5 and np.mean(accuracies) >= 0.75, accuracies


def test_multiclass_and_last_pooling(tiny_llama):
    y = np.arange(len(TEXTS)) % 3
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, pooling="last", layer=1, max_steps=3,
                           random_state=0, **FAST).fit(TEXTS, y)
    assert clf.n_steps_ == 3 and clf.layer_ == 1
    assert clf.decision_function(TEXTS[:5]).shape == clf.predict_proba(TEXTS[:5]).shape == (5, 3)


def test_max_steps_whatever_the_number_of_texts(tiny_llama):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=10, random_state=0,
                           **{**FAST, "batch_size": 5}).fit(TEXTS, LABELS)
    assert clf.n_steps_ == len(clf.loss_curve_) == 10  # 2.5 passes over 16 texts


def test_early_stopping_keeps_the_best_weights(tiny_llama):
    # labels at random: the validation loss soon rises as the fit learns the training texts
    texts, labels = TEXTS * 3, np.random.default_rng(0).permutation(np.tile(LABELS, 3))
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=270, eval_every=2,
                           validation_fraction=0.25, random_state=0,
                           **{**FAST, "n_iter_no_change": 2, "learning_rate": 0.05})
    clf.fit(texts, labels)
    steps, scores = clf.validation_steps_, clf.validation_scores_
    losses = clf.validation_loss_curve_
    assert len(steps) == len(scores) == len(losses) >= 3
    np.testing.assert_array_equal(steps, np.arange(len(steps)) * 2)  # from step 0
    assert clf.n_steps_ == steps[-1] < 270  # stopped early
    best = max(range(len(steps)), key=lambda i: (scores[i], -losses[i]))
    assert clf.best_step_ == steps[best] and best == len(steps) - 3  # two evaluations without gain


def test_early_stopping_can_keep_the_probe(tiny_llama):
    # a learning rate that wrecks the fit: step 0, the probe, stays the best
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=20, eval_every=1,
                           validation_fraction=0.25, random_state=0,
                           **{**FAST, "n_iter_no_change": 3, "learning_rate": 5.0,
                              "head_learning_rate": 5.0, "max_grad_norm": None})
    clf.fit(TEXTS * 2, LABELS.tolist() * 2)
    assert clf.best_step_ == 0 and clf.n_steps_ == 3
    assert all(np.abs(w).max() == 0 for k, w in clf.adapter_weights_.items() if "lora_B" in k)
    X = features(clf.model_name_or_path, TEXTS)
    np.testing.assert_allclose(clf.decision_function(TEXTS), clf.probe_.decision_function(X),
                               atol=1e-5)


def test_early_stopping_ends_the_fit_on_a_validation_plateau(tiny_llama):
    # Rates too small to move a float32 weight: every evaluation equals step 0's, so the fit
    # stops after n_iter_no_change of them, however many steps were allowed.
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=None, max_epochs=50,
                           eval_every=2, validation_fraction=0.25, random_state=0,
                           **{**FAST, "n_iter_no_change": 3, "learning_rate": 1e-30,
                              "head_learning_rate": 1e-30})
    clf.fit(TEXTS, LABELS)
    assert clf.validation_steps_.tolist() == [0, 2, 4, 6]
    assert clf.n_steps_ == 6 and clf.best_step_ == 0
    assert len(set(clf.validation_loss_curve_.tolist())) == 1


def test_the_fitted_classifier_holds_both_arms_text_by_text(tiny_llama):
    texts, labels = TEXTS * 2, LABELS.tolist() * 2
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=8, eval_every=2,
                           validation_fraction=0.25, random_state=0,
                           **{**FAST, "n_iter_no_change": 5}).fit(texts, labels)
    val = clf.validation_indices_
    assert len(val) == 8 and len(set(val.tolist())) == 8
    held_out = [texts[i] for i in val]
    train = np.setdiff1d(np.arange(len(texts)), val)
    # the start arm: the stored probe on the frozen features of the same texts, same order
    frozen = features(clf.model_name_or_path, held_out)
    np.testing.assert_array_equal(clf.validation_start_predictions_, clf.probe_.predict(frozen))
    np.testing.assert_array_equal(clf.predict_start(held_out), clf.probe_.predict(frozen))
    # the LoRA arm: the kept weights' predictions
    np.testing.assert_array_equal(clf.validation_predictions_, clf.predict(held_out))
    assert set(clf.validation_predictions_) <= set(clf.classes_)
    # the first loss is the probe's cross-entropy on its own training texts
    from sklearn.metrics import log_loss

    on_train = features(clf.model_name_or_path, [texts[i] for i in train])
    expected = log_loss(np.array(labels)[train], clf.probe_.predict_proba(on_train))
    assert clf.start_loss_ == pytest.approx(expected, rel=1e-6)
    assert clf.probe_C_ == clf.probe_[-1].C_


def test_training_length_scales_with_the_number_of_texts(tiny_llama):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=None, max_epochs=2,
                           random_state=0, **FAST)
    assert clf.fit(TEXTS, LABELS).n_steps_ == 2 * 4  # 16 texts in batches of 4
    assert clf.fit(TEXTS * 2, LABELS.tolist() * 2).n_steps_ == 2 * 8
    assert clf.validation_indices_ is None and clf.validation_predictions_ is None


def test_adapters_on_every_linear_module_of_the_blocks(tiny_llama):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=2, random_state=0,
                           target_modules="all-linear", **FAST).fit(TEXTS, LABELS)
    assert clf.target_modules_ == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                   "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                   "mlp.down_proj"]
    lora_b = [k for k in clf.adapter_weights_ if "lora_B" in k]
    assert len(lora_b) == 2 * 7  # 2 blocks of the tiny model, 7 linear modules each


def test_early_stopping_with_more_classes_than_validation_texts(tiny_llama):
    y = np.arange(len(TEXTS)) % 8  # 8 classes of 2 texts; 4 validation texts
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=4, eval_every=2,
                           validation_fraction=0.25, random_state=0,
                           **{**FAST, "n_iter_no_change": 2}).fit(TEXTS, y)
    assert clf.validation_steps_.tolist() == [0, 2, 4]
    assert clf.probe_[-1].classes_.tolist() == list(range(8))  # every class kept a text
    assert clf.probe_train_accuracy_ > 0
    again = clone(clf).fit(TEXTS, y)
    np.testing.assert_array_equal(again.validation_loss_curve_, clf.validation_loss_curve_)
    with pytest.raises(ValueError, match="every class has a single text"):
        clone(clf).fit(TEXTS[:8], np.arange(8))


def test_bert_defaults_and_string_labels(tiny_bert):
    clf = HFLoRAClassifier(model_name_or_path=tiny_bert, max_steps=4, random_state=0, **FAST)
    clf.fit(TEXTS, LABELS)
    assert clf.target_modules_ == ["query", "key", "value"]
    assert set(clf.predict(TEXTS)) <= {"bank", "film"}
    assert any(".attention.self.query.lora_A" in k for k in clf.adapter_weights_)


def test_gpt2_defaults():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=32, n_positions=16)
    assert resolve_target_modules(transformers.GPT2Model(config)) == ["c_attn"]


def test_fit_leaves_the_memoised_base_model_alone(tiny_llama, fitted):
    base = load_model(tiny_llama, progress=False).model
    assert not any("lora" in name for name, _ in base.named_modules())
    assert not any(p.requires_grad for p in base.parameters())


# ------------------------------------------------- reproducibility, weights


def test_same_random_state_same_bits_and_global_rng_untouched(tiny_llama, fitted):
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = clone(fitted).fit(TEXTS, LABELS)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(again.loss_curve_, fitted.loss_curve_)
    np.testing.assert_array_equal(again.decision_function(TEXTS), fitted.decision_function(TEXTS))
    other = clone(fitted).set_params(random_state=1).fit(TEXTS, LABELS)
    assert not np.array_equal(other.decision_function(TEXTS), fitted.decision_function(TEXTS))
    assert other.loaded_model().resolved.fingerprint != fitted.loaded_model().resolved.fingerprint


def test_pickle_keeps_only_the_adapter_and_head(wide_llama):
    clf = HFLoRAClassifier(model_name_or_path=wide_llama, max_steps=3, random_state=0,
                           **{**FAST, "r": 2}).fit(TEXTS, LABELS)
    expected = clf.predict_proba(TEXTS)
    blob = pickle.dumps(clf)
    weights = sum(p.numel() * p.element_size() for p in clf.loaded_model().model.parameters())
    # The frozen probe travels too, with its cross-validation's coefficient paths (one per fold
    # and C, so their size is the probe's business); the adapter and the head stay far below
    # the base weights.
    assert len(blob) - len(pickle.dumps(clf.probe_)) < min(5 << 20, weights / 10)
    assert b"_rebuild_tensor" not in blob  # no torch tensor, let alone the base weights
    restored = pickle.loads(blob)
    assert "_loaded" not in restored.__dict__
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), expected)








def test_loaded_model_has_the_adapter_merged(tiny_llama, fitted):
    merged = fitted.loaded_model()
    assert fitted.loaded_model() is merged  # memoised
    resolved = merged.resolved
    assert resolved.kind == "lora" and resolved.gguf_file is None
    assert resolved.name == f"{tiny_llama}+lora" and len(resolved.fingerprint) == 16
    base = load_model(tiny_llama, progress=False)
    assert resolved.path == base.resolved.path and resolved.fingerprint != base.resolved.fingerprint
    assert (merged.n_layers, merged.hidden_size, merged.device) == (3, 16, base.device)
    assert merged.tokenizer is base.tokenizer and merged.model is not base.model
    assert not any("lora" in name for name, _ in merged.model.named_modules())
    unmerged = states(fitted._adapted()[1], base.tokenizer)
    np.testing.assert_allclose(states(merged.model, base.tokenizer), unmerged, atol=1e-5)
    assert (states(base.model, base.tokenizer) - unmerged).abs().max() > 1e-3


# ------------------------------------------------------- scikit-learn API



def test_keyword_only_clone_and_params(fitted):
    with pytest.raises(TypeError):
        HFLoRAClassifier("SmolLM2-135M")
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "classes_")
    assert copy.set_params(r=8).r == 8 and fitted.r == 4


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "score",
                                    "loaded_model", "save_adapter"])
def test_not_fitted(method, tmp_path):
    clf = HFLoRAClassifier()
    args = {"predict": (TEXTS,), "predict_proba": (TEXTS,), "decision_function": (TEXTS,),
            "score": (TEXTS, LABELS), "loaded_model": (), "save_adapter": (tmp_path,)}[method]
    with pytest.raises(NotFittedError):
        getattr(clf, method)(*args)


@pytest.mark.parametrize("params", [{"layer": 1}, {"pooling": "last"}])
def test_changing_the_model_after_fit_needs_a_new_fit(fitted, params):
    with pytest.raises(ValueError, match=f"{next(iter(params))} changed since fit"):
        pickle.loads(pickle.dumps(fitted)).set_params(**params).predict(TEXTS)




# -------------------------------------------------------------- bad input


@pytest.mark.parametrize("texts, labels, match", [
    (TEXTS, ["bank"] * len(TEXTS), "single class"),
    ([], [], "X is empty"),
    (["my card", "  "], [0, 1], "Text 1 is empty"),
    ("my card was declined", [0], "single string"),
    (TEXTS, LABELS[:3], "inconsistent numbers of samples"),
])
def test_bad_texts_and_labels(tiny_llama, texts, labels, match):
    with pytest.raises(ValueError, match=match):
        HFLoRAClassifier(model_name_or_path=tiny_llama, **FAST).fit(texts, labels)








def test_truncation_is_reported(tiny_llama):
    with pytest.warns(UserWarning, match="6 of 16 texts were truncated to max_length=4 tokens"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, max_length=4, max_steps=1,
                         **FAST).fit(TEXTS, LABELS)


def test_layer_out_of_range(tiny_llama):
    with pytest.raises(ValueError, match=r"layer=3 is out of range.*3 hidden states"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, layer=3, **FAST).fit(TEXTS, LABELS)


@pytest.mark.parametrize("params", [
    {"r": 0}, {"pooling": "max"}, {"learning_rate": 0}, {"validation_fraction": 1.0},
    {"lora_dropout": 1}, {"max_steps": -1}, {"head_learning_rate": 0}, {"warmup": 1.5},
    {"warmup": -1}, {"lr_schedule": "step"}, {"max_grad_norm": 0}, {"head_init": "random"},
    {"label_smoothing": 1.0}, {"label_smoothing": -0.1},
    {"base_dropout": "yes"}, {"device": 0}, {"device": None}, {"torch_dtype": "float64"},
    {"torch_dtype": np.float32}, {"torch_dtype": None},
])
def test_bad_parameters(params):
    with pytest.raises(InvalidParameterError):
        HFLoRAClassifier(**params).fit(TEXTS, LABELS)


def test_torch_devices_and_dtypes_are_taken(tiny_llama):
    import torch

    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, device=torch.device("cpu"),
                           torch_dtype=torch.float32, max_steps=1, **FAST).fit(TEXTS, LABELS)
    assert clf.predict(TEXTS[:2]).shape == (2,)
    with pytest.raises(InvalidParameterError, match=r"torch\.device"):
        clf.set_params(device=3).fit(TEXTS, LABELS)


