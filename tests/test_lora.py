"""HFLoRAClassifier on tiny random models: training, the scikit-learn contract, weights on disk."""

import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ntps.lora import HFLoRAClassifier, resolve_target_modules
from sklearn_ntps.models import load_model

from builders import make_tiny_bert, make_tiny_llama

BANK = ["my card was declined", "why was my transfer declined", "money transfer not arrived yet",
        "top up cash fee", "how do i top up my account", "my card is not working", "bank fee why",
        "i want to transfer money"]
FILM = ["the film was great", "a boring movie", "good plot", "bad film with a boring plot",
        "great movie", "what a good film", "the plot was bad", "a great boring movie"]
TEXTS = BANK + FILM
LABELS = np.array(["bank"] * len(BANK) + ["film"] * len(FILM))
FAST = dict(r=4, lora_alpha=8, lora_dropout=0.0, batch_size=4, learning_rate=1e-2, progress=False)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory):
    # wide enough that its weights dwarf a rank-2 adapter
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "wide-llama", hidden_size=64)


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


def test_a_few_steps_lower_the_training_loss(fitted):
    curve = fitted.train_loss_curve_
    assert curve.shape == (12,) and fitted.n_steps_ == fitted.best_step_ == 12
    assert curve[0] == pytest.approx(np.log(2), rel=1e-6)  # the zero head predicts 1/2 each
    assert curve[-4:].mean() < 0.7 * curve[0]
    lora_b = [w for k, w in fitted.adapter_weights_.items() if "lora_B" in k]
    assert len(lora_b) == 2 * 3 and all(np.abs(w).max() > 0 for w in lora_b)  # B starts at zero
    assert fitted.score(TEXTS, LABELS) > 0.8
    assert fitted.fit_time_ > 0 and fitted.validation_scores_ is None


def test_outputs_of_every_method(fitted):
    proba = fitted.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    decision = fitted.decision_function(TEXTS)
    assert decision.shape == (len(TEXTS),)  # two classes: one score, as scikit-learn's
    np.testing.assert_array_equal(fitted.predict(TEXTS),
                                  fitted.classes_[(decision > 0).astype(int)])
    assert fitted.classes_.tolist() == ["bank", "film"]
    assert fitted.coef_.shape == (2, 16) and fitted.intercept_.shape == (2,)
    assert fitted.target_modules_ == ["q_proj", "k_proj", "v_proj"]
    assert fitted.layer_ == 2 and fitted.n_layers_ == 3 and fitted.hidden_size_ == 16


def test_multiclass_last_pooling_and_max_steps_over_epochs(tiny_llama):
    y = np.arange(len(TEXTS)) % 3
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, pooling="last", layer=1, epochs=5,
                           max_steps=3, random_state=0, **FAST).fit(TEXTS, y)
    assert clf.n_steps_ == 3 and clf.layer_ == 1
    assert clf.decision_function(TEXTS[:5]).shape == clf.predict_proba(TEXTS[:5]).shape == (5, 3)


def test_epochs_set_the_number_of_steps(tiny_llama):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, epochs=2, random_state=0,
                           **{**FAST, "batch_size": 5}).fit(TEXTS, LABELS)
    assert clf.n_steps_ == 2 * 4  # 16 texts in batches of 5


def test_early_stopping_keeps_the_best_weights(tiny_llama):
    texts, labels = TEXTS * 3, np.tile(LABELS, 3)
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, epochs=30, n_iter_no_change=2,
                           eval_every=2, validation_fraction=0.25, random_state=0,
                           **{**FAST, "learning_rate": 0.05}).fit(texts, labels)
    steps, scores = clf.validation_steps_, clf.validation_scores_
    losses = clf.validation_loss_curve_
    assert len(steps) == len(scores) == len(losses) >= 3
    np.testing.assert_array_equal(steps, np.arange(1, len(steps) + 1) * 2)
    assert clf.n_steps_ == steps[-1] < 30 * 9  # stopped early
    best = max(range(len(steps)), key=lambda i: (scores[i], -losses[i]))
    assert clf.best_step_ == steps[best] and best == len(steps) - 3  # two evaluations without gain


def test_a_validation_split_that_cannot_be_stratified(tiny_llama):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, n_iter_no_change=2,
                           validation_fraction=0.05, **FAST)
    with pytest.raises(ValueError, match="stratified validation split"):
        clf.fit(TEXTS, LABELS)


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
    np.testing.assert_array_equal(again.train_loss_curve_, fitted.train_loss_curve_)
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
    assert len(blob) < min(5 << 20, weights / 10)
    assert b"_rebuild_tensor" not in blob  # no torch tensor, let alone the base weights
    restored = pickle.loads(blob)
    assert "_loaded" not in restored.__dict__
    np.testing.assert_array_equal(restored.predict_proba(TEXTS), expected)


def test_save_and_load_adapter(fitted, tmp_path):
    import peft

    folder = fitted.save_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "head.npz",
            "sklearn_ntps_lora.json"} <= {p.name for p in folder.iterdir()}
    loaded = HFLoRAClassifier.load_adapter(folder, progress=False)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.train_loss_curve_, fitted.train_loss_curve_)
    assert loaded.n_steps_ == fitted.n_steps_ and loaded.target_modules_ == fitted.target_modules_
    np.testing.assert_array_equal(loaded.decision_function(TEXTS), fitted.decision_function(TEXTS))
    assert peft.LoraConfig.from_pretrained(folder).r == fitted.r  # peft reads it too


def test_an_adapter_on_another_base_model(fitted, wide_llama, tmp_path):
    folder = fitted.save_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match="hidden size 64, but the head was trained on 16"):
        HFLoRAClassifier.load_adapter(folder, model_name_or_path=wide_llama).predict(TEXTS)
    other = make_tiny_llama(tmp_path / "other-llama", seed=1)  # same shapes, other weights
    clf = HFLoRAClassifier.load_adapter(folder, model_name_or_path=other)
    with pytest.warns(UserWarning, match="differ from those the adapter was trained on"):
        assert clf.predict(TEXTS).shape == (len(TEXTS),)


def test_a_random_state_instance_is_saved_as_none(tiny_llama, tmp_path):
    clf = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=1,
                           random_state=np.random.RandomState(0), **FAST).fit(TEXTS, LABELS)
    assert HFLoRAClassifier.load_adapter(clf.save_adapter(tmp_path)).random_state is None


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


def test_changing_the_model_after_fit_needs_a_new_fit(fitted):
    with pytest.raises(ValueError, match="layer changed since fit"):
        pickle.loads(pickle.dumps(fitted)).set_params(layer=1).predict(TEXTS)


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


def test_unknown_target_modules_list_the_linear_modules(tiny_llama, tiny_bert):
    with pytest.raises(ValueError, match=r"\['query'\] match no linear module.*gate_proj.*q_proj"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, target_modules=["q_proj", "query"],
                         **FAST).fit(TEXTS, LABELS)
    clf = HFLoRAClassifier(model_name_or_path=tiny_bert, target_modules="dense", max_steps=1,
                           **FAST).fit(TEXTS, LABELS)
    assert clf.target_modules_ == ["dense"]


def test_no_default_target_modules():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"No default LoRA target modules.*its linear modules are: "
                                         "fc1, fc2"):
        resolve_target_modules(torch.nn.ModuleDict({"fc1": torch.nn.Linear(2, 2),
                                                    "fc2": torch.nn.Linear(2, 2)}))


def test_empty_target_modules(tiny_llama):
    with pytest.raises(ValueError, match="non-empty list of module names"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, target_modules=[],
                         **FAST).fit(TEXTS, LABELS)


def test_truncation_is_reported(tiny_llama):
    with pytest.warns(UserWarning, match="6 of 16 texts were truncated to max_length=4 tokens"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, max_length=4, max_steps=1,
                         **FAST).fit(TEXTS, LABELS)


def test_layer_out_of_range(tiny_llama):
    with pytest.raises(ValueError, match=r"layer=3 is out of range.*3 hidden states"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, layer=3, **FAST).fit(TEXTS, LABELS)


@pytest.mark.parametrize("params", [{"r": 0}, {"pooling": "max"}, {"learning_rate": 0},
                                    {"validation_fraction": 1.0}, {"lora_dropout": 1},
                                    {"max_steps": 0}])
def test_bad_parameters(params):
    with pytest.raises(InvalidParameterError):
        HFLoRAClassifier(**params).fit(TEXTS, LABELS)


def test_missing_peft_says_what_to_install(tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-ntps\[lora\]'"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, **FAST).fit(TEXTS, LABELS)
