"""LoRA adapters with peft: which modules get them, a model with them, the loop that trains them.

The machinery behind :class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier`, which
holds the parameters and the scikit-learn contract. torch, transformers and
peft are imported inside functions.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import warnings

import numpy as np
from tqdm.auto import tqdm

from .._utils import optional_import
from ..splits import stratified_split
from ..states.extraction import (
    encode,
    in_input_order,
    length_order,
    pooled_batch,
    shuffled_batches,
    split_batches,
    warn_truncated,
)

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "Trainer",
    "encoded_texts",
    "fit_start_probe",
    "fold_scaler",
    "import_peft",
    "lora_config",
    "lr_factor",
    "pooled_states",
    "probe_head",
    "resolve_target_modules",
    "seeded",
    "training_flags",
    "validation_split",
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
        ``DEFAULT_TARGET_MODULES`` that the model has; "all-linear" every
        linear module inside the model's repeated blocks, named from the
        block down ("self_attn.q_proj", "mlp.down_proj", ...), so that a
        pooler or an output head outside the blocks gets none.

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
    if target_modules == "all-linear":
        inside = list(dict.fromkeys(m.group(1) for n in linear
                                    if (m := re.search(r"\.\d+\.(.+)$", n))))
        if not inside:
            raise ValueError(f"{type(model).__name__} has no linear module inside numbered "
                             f"blocks; pass target_modules= with some of them: {listing}.")
        return inside
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
    """Import ``peft``, or raise an ImportError naming the ``lora`` extra.

    Returns
    -------
    module
        The ``peft`` module.
    """
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
    """The peft ``LoraConfig`` of rank-``r`` adapters on the ``targets`` modules of ``model``."""
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


def probe_head(probe, n_classes):
    """The weight and bias of a linear head on standardised features that gives a probe's logits.

    ``probe`` is a ``StandardScaler`` then a logistic regression; the head reads
    features standardised by that scaler (:func:`fold_scaler` turns it into a head on
    the raw pooled features). A binary regression's single row ``w`` becomes
    ``(-w / 2, w / 2)``: the same softmax, and the same difference of logits as the
    probe's ``decision_function``.

    Returns
    -------
    weight, bias : ndarray
        The head's, on standardised features.
    mean, scale : ndarray
        The scaler's, to standardise with.
    """
    scaler, linear = probe[0], probe[-1]
    if len(linear.classes_) != n_classes:
        raise ValueError(f"The probe saw {len(linear.classes_)} classes, the head has {n_classes}.")
    mean = np.zeros(linear.coef_.shape[1]) if scaler.mean_ is None else scaler.mean_
    scale = np.ones_like(mean) if scaler.scale_ is None else scaler.scale_
    weight, bias = linear.coef_, np.asarray(linear.intercept_, dtype=float)
    if n_classes == 2:
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    return weight, bias, mean, scale


def fold_scaler(weight, bias, mean, scale):
    """A head on standardised features as one on raw ones: ``W / scale``, ``b - W mean / scale``."""
    raw = weight / scale
    return raw, bias - raw @ mean


def validation_split(yi, fraction, seed):
    """Training and validation indices, stratified, every class keeping a training text.

    The probe and the head need each class; ``fraction`` None: no validation split.
    """
    everything = np.arange(len(yi))
    if fraction is None:
        return everything, None
    n_spare = len(yi) - (yi.max() + 1)
    if n_spare < 1:
        raise ValueError("Early stopping needs validation texts besides one training text "
                         "per class, and every class has a single text; use "
                         "n_iter_no_change=None.")
    n_val = min(math.ceil(fraction * len(yi)), n_spare)
    val, train = stratified_split(yi, n_val, random_state=seed, keep_each_class=True)
    return train, val


def lr_factor(step, total, warmup, schedule):
    """The learning rate of the ``step``-th update (from 0), as a fraction of the peak.

    Linear warmup over the first ``warmup`` updates (none is at zero), then a
    ``"linear"`` or ``"cosine"`` decay that reaches zero just after the last
    update, or ``"constant"``.

    Examples
    --------
    >>> from sklearn_ntps.lora.adapters import lr_factor
    >>> [round(lr_factor(s, 6, 2, "linear"), 3) for s in range(6)]
    [0.333, 0.667, 1.0, 0.75, 0.5, 0.25]
    >>> [round(lr_factor(s, 4, 0, "cosine"), 3) for s in range(4)]
    [1.0, 0.854, 0.5, 0.146]
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))


def training_flags(model, base_dropout):
    """Each module's ``training`` flag while training.

    On for the adapters, and for the base model's own modules only with ``base_dropout``.

    ``model.train()`` alone would also switch on every dropout of the base
    model (BERT's 0.1 on attention and hidden states, for instance), some of
    them applied by the attention module itself when its flag is on.
    """
    adapters = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    return [(m, base_dropout or any(n == a or n.startswith(a + ".") for a in adapters))
            for n, m in model.named_modules()]


class Trainer:
    """The training loop: AdamW steps on a warmup-and-decay schedule with clipped gradients.

    It keeps the loss of every step and stops early on a validation split.
    """

    def __init__(self, est, model, head, base, encoded, y, layer, footing):
        import torch

        self.est, self.model, self.head, self.base = est, model, head, base
        self.encoded, self.y, self.layer = encoded, y.to(base.device), layer
        # The head reads features on the starting probe's footing (its scaler's mean and
        # scale), so its weights start, and are updated, in the units the probe was fitted in.
        self.mean, self.scale = (torch.as_tensor(v, dtype=torch.float32, device=base.device)
                                 for v in footing)
        self.lengths = np.array([len(ids) for ids in encoded])
        self.flags = training_flags(model, est.base_dropout)

    def _optimizer(self):
        import torch

        est = self.est
        adapters = [p for p in self.model.parameters() if p.requires_grad]
        head_lr = est.learning_rate if est.head_learning_rate is None else est.head_learning_rate
        # No decay on biases and norms' gains (1-d), as usual; LoRA's A and B and the head's
        # weight are matrices.
        groups = [
            {"params": [p for p in adapters if p.ndim > 1], "lr": est.learning_rate},
            {"params": [p for p in adapters if p.ndim <= 1], "lr": est.learning_rate,
             "weight_decay": 0.0},
            {"params": [self.head.weight], "lr": head_lr},
            {"params": [self.head.bias], "lr": head_lr, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]],
                                 weight_decay=est.weight_decay)

    def run(self, train, val, generator, total, warmup):
        """Train the adapters and the head for ``total`` steps, or until early stopping.

        With a validation split, the adapters and head are scored on it at step 0 and
        every ``eval_every`` steps (by default once an epoch); training stops after
        ``n_iter_no_change`` evaluations without improvement, and the best weights (by
        accuracy, then validation loss) are restored at the end.

        Parameters
        ----------
        train : array of int
            Indices of the training texts.
        val : array of int or None
            Indices of the validation texts; None trains for ``total`` steps, without
            early stopping.
        generator : torch.Generator
            The random generator that shuffles the batches.
        total : int
            The most optimizer steps to take.
        warmup : int
            Steps of linear learning-rate warmup (:func:`lr_factor`).

        Returns
        -------
        dict
            The fitted history: ``loss_curve_`` (every step's training loss),
            ``validation_scores_``, ``validation_loss_curve_`` and ``validation_steps_``
            (None without evaluations), ``n_steps_`` and ``best_step_``, and the
            validation texts' predicted class codes at step 0 and at the kept step
            (``validation_start_predictions_``, ``validation_predictions_``).
        """
        import torch

        est = self.est
        optimizer = self._optimizer()
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, est.lr_schedule))
        every = est.eval_every or math.ceil(len(train) / est.batch_size)
        losses, evals, predicted = [], [], {}
        best, best_step, best_state, stale, step, running = None, 0, None, 0, 0, None

        def evaluate():
            nonlocal best, best_step, best_state, stale
            accuracy, val_loss, codes = self._evaluate(val)
            evals.append((step, accuracy, val_loss))
            predicted.setdefault("start", codes)
            # accuracy first; the loss breaks its frequent ties on small splits
            if best is None or (accuracy, -val_loss) > best:
                best, best_step, stale = (accuracy, -val_loss), step, 0
                best_state, predicted["kept"] = self._snapshot(), codes
            else:
                stale += 1

        def stop():
            return step >= total or (evals and stale >= est.n_iter_no_change)

        if val is not None:
            evaluate()  # step 0, the head's start (the probe, or zeros), is a candidate too
        bar = tqdm(total=total, desc="LoRA fine-tuning", unit="step", disable=not est.progress,
                   delay=2)
        with bar:
            while not stop():
                for idx in shuffled_batches(train, self.lengths, est.batch_size, generator):
                    loss = self._step(optimizer, idx)
                    schedule.step()
                    step += 1
                    losses.append(loss)
                    running = loss if running is None else 0.9 * running + 0.1 * loss
                    bar.update()
                    bar.set_postfix(loss=f"{running:.3f}", refresh=False)
                    if val is not None and (step % every == 0 or step == total):
                        evaluate()
                    if stop():
                        break
        if best_state is not None:
            self._restore(best_state)
        steps = scores = val_losses = None
        if evals:
            steps, scores, val_losses = (np.array(v) for v in zip(*evals, strict=True))
        return {
            "loss_curve_": np.array(losses, dtype=float),
            "validation_scores_": scores,
            "validation_loss_curve_": val_losses,
            "validation_steps_": steps,
            "n_steps_": step,
            "best_step_": best_step if evals else step,
            "validation_start_predictions_": predicted.get("start"),
            "validation_predictions_": predicted.get("kept"),
        }

    def _step(self, optimizer, idx):
        import torch

        for module, flag in self.flags:
            module.training = flag
        pooled = pooled_batch(
            self.base,
            [self.encoded[i] for i in idx],
            self.layer,
            self.est.pooling,
            model=self.model,
        )
        loss = torch.nn.functional.cross_entropy(self._head(pooled), self.y[idx],
                                                 label_smoothing=self.est.label_smoothing)
        loss.backward()
        if self.est.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._weights(), self.est.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _evaluate(self, val):
        import torch

        self.model.eval()
        total_loss, codes = 0.0, []
        with torch.inference_mode():
            for start in range(0, len(val), self.est.batch_size):
                idx = val[start : start + self.est.batch_size]
                logits = self._head(
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
                codes.append(logits.argmax(dim=1).cpu().numpy())
        codes = np.concatenate(codes)
        return float(np.mean(codes == self.y[val].cpu().numpy())), total_loss / len(val), codes

    def _head(self, pooled):
        return self.head((pooled - self.mean) / self.scale)

    def _snapshot(self):
        return [p.detach().clone() for p in self._weights()]

    def _restore(self, state):
        import torch

        with torch.no_grad():
            for p, saved in zip(self._weights(), state, strict=True):
                p.copy_(saved)

    def _weights(self):
        return [*(p for p in self.model.parameters() if p.requires_grad), *self.head.parameters()]


def pooled_states(loaded, encoded, layer, pooling, batch_size, progress, desc):
    """Pooled states of ``layer`` (float32, on the model's device), in the texts' order."""
    import torch

    order = length_order([len(ids) for ids in encoded])
    with torch.inference_mode():
        rows = [pooled_batch(loaded, [encoded[i] for i in idx], layer, pooling)
                for idx in tqdm(split_batches(order, batch_size), desc=desc, unit="batch",
                                disable=not progress, delay=2)]
    return torch.cat(rows)[torch.from_numpy(in_input_order(order)).to(rows[0].device)]


def fit_start_probe(features, y):
    """The frozen probe of the training texts, C chosen by cross-validation on them."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    from ..choice.probe import default_probe

    probe = clone(default_probe())
    if np.unique(y, return_counts=True)[1].max() < 3:  # no class fills 3 stratified folds
        probe[-1].set_params(cv=KFold(3, shuffle=True, random_state=0))
    return probe.fit(features, y)


def encoded_texts(loaded, texts, max_length):
    """Token ids of each text, truncated to ``max_length`` (a warning says how many were)."""
    encoded, limit, n_truncated = encode(loaded, texts, max_length)
    warn_truncated(n_truncated, len(texts), limit)
    return encoded
