"""Saving and loading a fitted HFLoRAClassifier (sklearn_ntps.lora.persistence)."""

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from sklearn_ntps.lora.classifier import HFLoRAClassifier

from builders import FAST_LORA as FAST
from builders import LORA_LABELS as LABELS
from builders import LORA_TEXTS as TEXTS
from builders import make_tiny_llama


@pytest.fixture(scope="module")
def fitted(tiny_llama):
    return HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=12, random_state=0,
                            **FAST).fit(TEXTS, LABELS)


def test_save_and_load_adapter(fitted, tmp_path):
    import peft

    folder = fitted.save_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "head.npz",
            "sklearn_ntps_lora.json"} <= {p.name for p in folder.iterdir()}
    loaded = HFLoRAClassifier.load_adapter(folder, progress=False)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.loss_curve_, fitted.loss_curve_)
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


@pytest.mark.parametrize("params", [{"layer": 1}, {"pooling": "last"}, {"r": 8},
                                    {"target_modules": ["q_proj"]}])
def test_load_adapter_keeps_what_the_head_was_trained_on(fitted, tmp_path, params):
    folder = fitted.save_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match=f"cannot change {next(iter(params))}: the head"):
        HFLoRAClassifier.load_adapter(folder, **params)
    same = HFLoRAClassifier.load_adapter(folder, layer=-1, pooling="mean", batch_size=3)
    np.testing.assert_allclose(same.decision_function(TEXTS), fitted.decision_function(TEXTS),
                               atol=1e-6)
