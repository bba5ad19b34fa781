"""LoRA adapters and their training (sklearn_ntps.lora.adapters)."""

import sys

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from sklearn_ntps.lora.adapters import resolve_target_modules
from sklearn_ntps.lora.classifier import HFLoRAClassifier

from builders import FAST_LORA as FAST
from builders import LORA_LABELS as LABELS
from builders import LORA_TEXTS as TEXTS


def test_warmup_decay_weight_decay_and_clipping(tiny_llama, monkeypatch):
    import torch

    from sklearn_ntps.lora import adapters

    seen, clipped = [], []
    step = adapters.Trainer._step

    def spy(self, optimizer, idx):
        seen.append([(g["lr"], g["weight_decay"], len(g["params"]))
                     for g in optimizer.param_groups])
        return step(self, optimizer, idx)

    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(adapters.Trainer, "_step", spy)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, norm: clipped.append(norm) or clip(params, norm))
    HFLoRAClassifier(model_name_or_path=tiny_llama, random_state=0, **{
        **FAST, "max_steps": 6, "warmup": 2, "learning_rate": 1e-2, "head_learning_rate": 1e-3,
        "weight_decay": 0.1, "max_grad_norm": 0.5}).fit(TEXTS, LABELS)
    factors = [1 / 3, 2 / 3, 1, 3 / 4, 1 / 2, 1 / 4]
    # adapters' matrices (2 blocks x q, k, v x A, B), the head's weight, then its bias
    assert [[g[1:] for g in groups] for groups in seen] == [[(0.1, 12), (0.1, 1), (0.0, 1)]] * 6
    np.testing.assert_allclose([[g[0] for g in groups] for groups in seen],
                               [[1e-2 * f, 1e-3 * f, 1e-3 * f] for f in factors])
    assert clipped == [0.5] * 6
    HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=2, max_grad_norm=None,
                     **FAST).fit(TEXTS, LABELS)
    assert clipped == [0.5] * 6
    cosine = HFLoRAClassifier(model_name_or_path=tiny_llama, max_steps=4, lr_schedule="cosine",
                              **{**FAST, "warmup": 0.25})
    seen.clear()
    cosine.fit(TEXTS, LABELS)
    np.testing.assert_allclose([groups[0][0] for groups in seen],
                               1e-2 * np.array([0.5, 1, 0.75, 0.25]))


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


def test_missing_peft_says_what_to_install(tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-ntps\[lora\]'"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, **FAST).fit(TEXTS, LABELS)
