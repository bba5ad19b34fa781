"""LoRA adapters with peft: which modules get them, a model with them, the loop that trains them.

The machinery behind :class:`~sklearn_ntps.lora.HFLoRAClassifier`, which
holds the parameters and the scikit-learn contract. torch, transformers and
peft are imported inside functions.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings

import numpy as np
from tqdm.auto import tqdm

from ._utils import optional_import
from .extraction import pooled_batch, shuffled_batches

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "Trainer",
    "import_peft",
    "lora_config",
    "resolve_target_modules",
    "seeded",
    "with_adapter",
]

# Attention projections per architecture family, tried in order; the first
# group whose every name is one of the model's linear modules is the default.
DEFAULT_TARGET_MODULES = (
    ("q_proj", "k_proj", "v_proj"),  # Llama, Mistral, Qwen, Gemma, OPT
    ("query", "key", "value"),  # BERT, RoBERTa, MiniLM
    ("c_attn",),  # GPT-2 (one fused Conv1D)
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("qkv_proj",),  # Phi-3
    ("Wqkv",),  # ModernBERT, MPT
)


def resolve_target_modules(model, target_modules=None):
    """The LoRA target module names for ``model``, checked against its linear modules.

    Parameters
    ----------
    model : torch.nn.Module
    target_modules : str or list of str, default=None
        Module names or dotted name suffixes; None picks the first group of
        ``DEFAULT_TARGET_MODULES`` that the model has.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If a name matches no linear module, or no default group fits;
        the message lists the model's linear modules.
    """
    linear = _linear_modules(model)
    names = sorted({n.rsplit(".", 1)[-1] for n in linear})
    listing = f"its linear modules are: {', '.join(names) or 'none'}"
    if target_modules is None:
        for group in DEFAULT_TARGET_MODULES:
            if set(group) <= set(names):
                return list(group)
        raise ValueError(
            f"No default LoRA target modules for {type(model).__name__}; pass "
            f"target_modules= with some of them: {listing}."
        )
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not wanted or not all(isinstance(w, str) and w for w in wanted):
        raise ValueError(
            f"target_modules must be a non-empty list of module names, got "
            f"{target_modules!r}; {listing}."
        )
    missing = [w for w in wanted if not any(_matches(n, [w]) for n in linear)]
    if missing:
        raise ValueError(
            f"target_modules {missing} match no linear module of {type(model).__name__}; {listing}."
        )
    return wanted


def _linear_modules(model):
    import torch
    from transformers.pytorch_utils import Conv1D

    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))]


def _matches(name, targets):
    return any(name == t or name.endswith("." + t) for t in targets)


def import_peft():
    return optional_import("peft", "lora", "HFLoRAClassifier")


def with_adapter(peft, base, config):
    """A copy of the base model with fresh adapters; the memoised base stays untouched."""
    import torch

    model = copy.deepcopy(base.model)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft calls a transformers helper that transformers 5 deprecates
        warnings.filterwarnings(
            "ignore", message=".*gradient_checkpointing", category=FutureWarning
        )
        return peft.get_peft_model(model, config)


@contextlib.contextmanager
def seeded(torch, seed, device):
    """Seed torch's global RNGs inside the block only, and yield a generator for the text order."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def lora_config(peft, model, targets, *, r, lora_alpha, lora_dropout):
    """peft's ``LoraConfig`` for adapters of rank ``r`` on the ``targets`` modules of ``model``."""
    from transformers.pytorch_utils import Conv1D

    conv1d = any(isinstance(m, Conv1D) for n, m in model.named_modules() if _matches(n, targets))
    return peft.LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(targets),
        bias="none",
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores its weight transposed; peft warns else
    )


class Trainer:
    """The training loop: AdamW steps, the running loss, early stopping on a validation split."""

    def __init__(self, est, model, head, base, encoded, y, layer):
        self.est, self.model, self.head, self.base = est, model, head, base
        self.encoded, self.y, self.layer = encoded, y.to(base.device), layer
        self.lengths = np.array([len(ids) for ids in encoded])

    def run(self, train, val, generator):
        import torch

        est = self.est
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [*trainable, *self.head.parameters()],
            lr=est.learning_rate,
            weight_decay=est.weight_decay,
        )
        per_epoch = math.ceil(len(train) / est.batch_size)
        total = est.max_steps if est.max_steps is not None else est.epochs * per_epoch
        every = est.eval_every or per_epoch
        losses, evals = [], []
        best, best_step, best_state, stale, step, running = None, 0, None, 0, 0, None
        bar = tqdm(
            total=total, desc="LoRA fine-tuning", unit="step", disable=not est.progress, delay=2
        )
        with bar:
            while step < total and not (evals and stale >= est.n_iter_no_change):
                for idx in shuffled_batches(train, self.lengths, est.batch_size, generator):
                    loss = self._step(optimizer, idx)
                    step += 1
                    losses.append(loss)
                    running = loss if running is None else 0.9 * running + 0.1 * loss
                    bar.update()
                    bar.set_postfix(loss=f"{running:.3f}", refresh=False)
                    if val is not None and (step % every == 0 or step == total):
                        accuracy, val_loss = self._evaluate(val)
                        evals.append((step, accuracy, val_loss))
                        # accuracy first; the loss breaks its frequent ties on small splits
                        if best is None or (accuracy, -val_loss) > best:
                            best, best_step, stale = (accuracy, -val_loss), step, 0
                            best_state = self._snapshot()
                        else:
                            stale += 1
                    if step >= total or (evals and stale >= est.n_iter_no_change):
                        break
        if best_state is not None:
            self._restore(best_state)
        steps = scores = val_losses = None
        if evals:
            steps, scores, val_losses = (np.array(v) for v in zip(*evals, strict=True))
        return {
            "train_loss_curve_": np.array(losses),
            "validation_scores_": scores,
            "validation_loss_curve_": val_losses,
            "validation_steps_": steps,
            "n_steps_": step,
            "best_step_": best_step if evals else step,
        }

    def _step(self, optimizer, idx):
        import torch

        self.model.train()
        pooled = pooled_batch(
            self.base,
            [self.encoded[i] for i in idx],
            self.layer,
            self.est.pooling,
            model=self.model,
        )
        loss = torch.nn.functional.cross_entropy(self.head(pooled), self.y[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _evaluate(self, val):
        import torch

        self.model.eval()
        correct, total_loss = 0, 0.0
        with torch.inference_mode():
            for start in range(0, len(val), self.est.batch_size):
                idx = val[start : start + self.est.batch_size]
                logits = self.head(
                    pooled_batch(
                        self.base,
                        [self.encoded[i] for i in idx],
                        self.layer,
                        self.est.pooling,
                        model=self.model,
                    )
                )
                target = self.y[idx]
                total_loss += float(
                    torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                )
                correct += int((logits.argmax(dim=1) == target).sum())
        return correct / len(val), total_loss / len(val)

    def _snapshot(self):
        return [p.detach().clone() for p in self._weights()]

    def _restore(self, state):
        import torch

        with torch.no_grad():
            for p, saved in zip(self._weights(), state, strict=True):
                p.copy_(saved)

    def _weights(self):
        return [*(p for p in self.model.parameters() if p.requires_grad), *self.head.parameters()]
