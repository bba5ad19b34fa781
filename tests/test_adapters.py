"""LoRA adapters and their training (sklearn_ntps.lora.adapters)."""

import sys

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")

from sklearn_ntps.lora.adapters import fold_scaler, probe_head, resolve_target_modules
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


def test_all_linear_is_every_linear_module_inside_the_blocks(tiny_bert):
    torch = pytest.importorskip("torch")
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(tiny_bert)
    names = resolve_target_modules(bert, "all-linear")
    assert names == ["attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "intermediate.dense", "output.dense"]
    assert any(n.startswith("pooler.") for n, m in bert.named_modules()
               if isinstance(m, torch.nn.Linear))  # there is a pooler, and it gets none
    flat = torch.nn.ModuleDict({"fc1": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match=r"no linear module inside numbered blocks.*fc1"):
        resolve_target_modules(flat, "all-linear")


@pytest.mark.parametrize("k", [2, 3])
def test_the_probe_head_on_standardised_features_folds_into_the_probe(k):
    from sklearn_ntps.choice.probe import default_probe

    rng = np.random.default_rng(0)
    y = np.arange(60) % k
    X = 5 + 3 * rng.normal(size=(60, 4)) + np.eye(k, 4)[y]
    probe = default_probe(n_jobs=None).fit(X, y)
    weight, bias, mean, scale = probe_head(probe, k)
    np.testing.assert_allclose(mean, probe[0].mean_)
    standardised = (X - mean) / scale @ weight.T + bias
    raw = X @ fold_scaler(weight, bias, mean, scale)[0].T + fold_scaler(weight, bias, mean,
                                                                         scale)[1]
    np.testing.assert_allclose(standardised, raw, atol=1e-10)
    decision = probe.decision_function(X)
    if k == 2:  # the two rows' difference is the binary logit
        np.testing.assert_allclose(raw[:, 1] - raw[:, 0], decision, atol=1e-10)
    else:
        np.testing.assert_allclose(raw, decision, atol=1e-10)


def test_empty_target_modules(tiny_llama):
    with pytest.raises(ValueError, match="non-empty list of module names"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, target_modules=[],
                         **FAST).fit(TEXTS, LABELS)


def test_missing_peft_says_what_to_install(tiny_llama, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-ntps\[lora\]'"):
        HFLoRAClassifier(model_name_or_path=tiny_llama, **FAST).fit(TEXTS, LABELS)
