"""LoRA fine-tuning of a language model plus a linear head, as a scikit-learn classifier.

:class:`HFLoRAClassifier` measures what LoRA fine-tuning gains over its start, the
frozen linear probe fitted on the same texts (the paper relates that gain to NTPS; this
package's studies could not yet detect it, docs/lora.md). torch, transformers
and peft are imported inside functions, so ``import sklearn_ntps`` stays light.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import log_loss
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._sklearn_compat import Interval, RealNotInt, StrOptions, _fit_context
from ..checks import check_labelled
from ..states.extraction import (
    check_texts,
    resolve_layer,
)
from ..states.models import (
    DEVICE_CONSTRAINTS,
    DTYPE_CONSTRAINTS,
    LoadedModel,
    ResolvedModel,
    load_model,
)
from ..states.statistics import POOLINGS
from .adapters import (
    Trainer,
    encoded_texts,
    fit_start_probe,
    fold_scaler,
    import_peft,
    lora_config,
    pooled_states,
    probe_head,
    resolve_target_modules,
    seeded,
    validation_split,
    with_adapter,
)
from .persistence import adapted_model, read_adapter, write_adapter

__all__ = ["HFLoRAClassifier"]

class HFLoRAClassifier(ClassifierMixin, BaseEstimator):
    """LoRA fine-tuning of a language model with a linear head on one layer.

    A frozen probe (standardised features and a logistic regression whose C
    is cross-validated, as :func:`~sklearn_ntps.choice.probe.default_probe`)
    is fitted on the pooled hidden states of ``layer`` (as
    :class:`~sklearn_ntps.HFEmbeddingTransformer` gives them): the start, the
    arm every gain is measured against (:meth:`predict_start`, and on the
    validation texts ``validation_start_predictions_``). A linear head reads the
    same features standardised by the probe's scaler and starts at zero (the
    default) or at the probe itself (``head_init="probe"``: linear probing then
    fine-tuning, where at step 0 the classifier predicts exactly as the probe).
    The head and LoRA adapters (``peft``) on the attention projections of every
    block (or every linear module of the blocks) are then trained together
    with cross-entropy by AdamW, with linear warmup and a decaying learning
    rate, clipped gradients and weight decay, for ``max_epochs`` passes over
    the texts or, with ``n_iter_no_change``, until the accuracy on a
    validation split stops improving. Pickling keeps the adapter, the head and
    the probe, never the base weights, which are loaded again with
    :func:`~sklearn_ntps.states.models.load_model`.

    Parameters
    ----------
    model_name_or_path : str or path-like, default="SmolLM2-135M"
        A bundled short name ("SmolLM2-135M", "all-MiniLM-L6-v2"), a local
        model folder, a ``.gguf`` file, or a hub id already in the local hub cache.
    layer : int, default=-1
        Hidden-state index the head reads: 0 is the embedding output, 1 ..
        n_layers the blocks' outputs; negative values count from the end.
    pooling : {"mean", "last"}, default="mean"
        Mean over a text's tokens, or its last real token; padding is never
        pooled, and position ids count real tokens only.
    r : int, default=32
        LoRA rank.
    lora_alpha : float, default=32
        LoRA scaling numerator: the update is ``lora_alpha / r * B A``.
    lora_dropout : float, default=0.05
        Dropout on the adapters' input while training.
    target_modules : str or list of str, default=None
        Names (or dotted name suffixes) of the linear modules that get
        adapters, in every block. None picks the attention projections of the
        architecture: ``q_proj, k_proj, v_proj`` (Llama, Mistral, Qwen),
        ``query, key, value`` (BERT, MiniLM), ``c_attn`` (GPT-2), ...;
        "all-linear": every linear module inside the blocks (attention and MLP).
    head_init : {"probe", "zeros"}, default="zeros"
        "zeros" starts the head at the uniform prediction (the adapters get no
        gradient until the head has moved); "probe" at the fitted probe (its
        scaler folded in). A probe that fits its training texts (a first loss
        near 0, usual at 1,000 texts and C >= 1) leaves the adapters almost
        nothing to learn: on HWU64 dev, 10 passes from the probe gained +0.2
        points over it, from zeros +1.4 to +1.6 (docs/lora.md).
    max_steps : int or None, default=None
        The most optimizer steps; None: ``max_epochs`` passes over the
        training texts, so training scales with their number. An int fixes
        it whatever the number of texts. 0 keeps the probe: the classifier
        then predicts as ``probe_`` on the pooled features.
    max_epochs : int, default=10
        Passes over the training texts when ``max_steps`` is None.
    batch_size : int, default=16
    learning_rate : float, default=2e-3
        Peak learning rate of the adapters.
    head_learning_rate : float, default=2e-3
        Peak learning rate of the head; None: ``learning_rate``.
    warmup : int or float, default=0.1
        Steps of linear warmup from near zero to the peak rates: an int, or a
        float in [0, 1), a fraction of the most steps.
    lr_schedule : {"linear", "cosine", "constant"}, default="linear"
        The decay after warmup, to zero at the end of the most steps.
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay, on the adapters' matrices and the
        head's weight; never on biases or norms.
    max_grad_norm : float, default=1.0
        Clip the gradient of every trained weight together to this norm;
        None does not clip.
    label_smoothing : float in [0, 1), default=0.0
        Of the training loss (``torch.nn.functional.cross_entropy``'s): the
        target puts this much mass evenly on all classes. A starting probe that
        fits its training texts (a loss near 0) leaves the adapters little to
        learn from; smoothing keeps a gradient. Validation uses the plain loss.
    base_dropout : bool, default=False
        Switch on the base model's own dropout while training (BERT's 0.1, for
        instance). Off, the usual choice for LoRA on small data: only the
        adapters' ``lora_dropout`` is active.
    validation_fraction : float, default=0.1
        Share of the training texts held out for early stopping (stratified
        when every class can be; otherwise a seeded random split in which
        every class keeps a training text); used only when
        ``n_iter_no_change`` is set. The probe is then fitted on the rest.
    n_iter_no_change : int or None, default=None
        Stop once this many evaluations in a row have not improved the
        validation accuracy (ties broken by the validation loss), and keep the
        best weights seen, step 0's included. None (the default) trains on
        every text for the most steps: on HWU64 dev at 1,000 texts, early
        stopping with 3 cost about a point of the gain (+0.4 against +1.4; a
        tenth of the texts held out, and a noisy choice of step on them).
    eval_every : int, default=None
        Evaluate on the validation texts every this many steps (and at step 0
        and after the last step); None: once per pass over the training texts.
        Only with ``n_iter_no_change``.
    max_length : int, default=128
        Longer texts are truncated (a warning gives how many).
    device : str or torch.device, default="auto"
        "auto" picks CUDA, then MPS, then the CPU.
    torch_dtype : {"auto", "float32", "bfloat16", "float16"} or torch.dtype, default="auto"
        Dtype of the base weights: "auto" is float32 on the CPU and the
        checkpoint's dtype elsewhere; the adapters and the head are float32.
    trust_remote_code : bool, default=False
        Run a model repository's own code; never without your say-so.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the adapters' initialisation, dropout and
        the order of the texts (the probe's folds are seeded by itself). With
        an int, two fits on the CPU give bit-identical predictions. The global
        torch RNG is left as it was.
    progress : bool, default=True
        Show a progress bar with the running loss (after two seconds).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes, hidden_size_)
        The head's weights, one row per class (two rows for two classes).
    intercept_ : ndarray of shape (n_classes,)
    probe_ : Pipeline
        The frozen probe (:func:`~sklearn_ntps.choice.probe.default_probe`) on
        the pooled features of ``layer_`` of the training texts (without the
        validation texts): the classifier's start. Not written by :meth:`save_adapter`.
    probe_C_ : float
        Its cross-validated inverse regularisation.
    probe_train_accuracy_ : float
        Its accuracy on the texts it was fitted on (no held-out text is used).
    start_loss_ : float
        Its mean cross-entropy on those texts: the loss training starts from
        (near log K for a small C, near 0 for a large one).
    validation_indices_ : ndarray or None
        Positions in ``X`` of the validation texts; None without early stopping.
    validation_start_predictions_, validation_predictions_ : ndarray or None
        The predicted labels of the validation texts at step 0 (the probe's)
        and with the weights kept: the two arms, text by text.
    adapter_weights_ : dict of str to ndarray
        The LoRA matrices, keyed as in ``peft.get_peft_model_state_dict``.
    target_modules_ : list of str
        The modules that got adapters.
    layer_ : int
        ``layer`` as a non-negative index.
    n_layers_ : int
        Number of hidden-state outputs of the model (blocks + 1).
    hidden_size_ : int
    base_fingerprint_ : str
        Identifies the base weights the adapter was trained on.
    loss_curve_ : ndarray of shape (n_steps_,)
        Training loss (mean cross-entropy of the batch, before its update) at every step.
    validation_scores_ : ndarray or None
        Validation accuracy at every evaluation; None without early stopping.
    validation_loss_curve_ : ndarray or None
        Validation cross-entropy at every evaluation.
    validation_steps_ : ndarray or None
        The steps after which they were measured (0: before the first).
    n_steps_ : int
        Optimizer steps taken.
    best_step_ : int
        The step whose weights were kept (``n_steps_`` without early stopping).
    fit_time_ : float
        Seconds spent in ``fit``.
    model_params_ : dict
        The parameters that define the fitted model; changing one needs a new fit.

    See Also
    --------
    HFEmbeddingTransformer : frozen hidden states, for a linear probe or NTPS.

    Notes
    -----
    Each fitted classifier holds its own copy of the base model with the
    adapter merged (:meth:`loaded_model`), built at the first prediction;
    the base model in ``load_model``'s loaded-model memo is never modified. Texts are
    shuffled at every pass, then sorted by length within pools of 4 batches
    (fewer on small sets), so a batch holds texts of similar lengths (little
    padding) and the batches differ from one pass to the next.

    The defaults were calibrated on HWU64 intents (``benchmarks/bench_lora.py``,
    which is not a task of any study); see ``docs/lora.md``.

    Examples
    --------
    >>> from sklearn_ntps.lora.classifier import HFLoRAClassifier
    >>> texts = ["my card was declined", "why was my transfer declined",
    ...          "the film was great", "a boring movie", "card not working", "good plot"]
    >>> labels = ["bank", "bank", "film", "film", "bank", "film"]
    >>> clf = HFLoRAClassifier(model_name_or_path="all-MiniLM-L6-v2", layer=2, r=4,
    ...                        max_steps=3, batch_size=3, random_state=0, progress=False)
    >>> clf.fit(texts, labels).predict_proba(["a great film"]).shape
    (1, 2)
    >>> clf.classes_.tolist(), clf.n_steps_, clf.loss_curve_.shape, clf.target_modules_
    (['bank', 'film'], 3, (3,), ['query', 'key', 'value'])
    >>> clf.loaded_model().resolved.name
    'all-MiniLM-L6-v2+lora'
    """

    _parameter_constraints: dict = {
        "model_name_or_path": [str, os.PathLike],
        "layer": [Integral],
        "pooling": [StrOptions(set(POOLINGS))],
        "r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "lora_dropout": [Interval(Real, 0, 1, closed="left")],
        "target_modules": [None, str, list, tuple],
        "head_init": [StrOptions({"probe", "zeros"})],
        "max_steps": [None, Interval(Integral, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "head_learning_rate": [None, Interval(Real, 0, None, closed="neither")],
        "warmup": [Interval(Integral, 0, None, closed="left"),
                   Interval(RealNotInt, 0, 1, closed="left")],
        "lr_schedule": [StrOptions({"linear", "cosine", "constant"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "base_dropout": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [None, Interval(Integral, 1, None, closed="left")],
        "eval_every": [None, Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "device": DEVICE_CONSTRAINTS,
        "torch_dtype": DTYPE_CONSTRAINTS,
        "trust_remote_code": ["boolean"],
        "random_state": ["random_state"],
        "progress": ["boolean"],
    }
    # What the fitted weights mean: changing one after fit needs a new fit.
    _MODEL_PARAMS = ("model_name_or_path", "layer", "pooling", "r", "lora_alpha", "target_modules",
                     "trust_remote_code")
    # Of those, what load_adapter may change: where the base model lives, and how it is loaded.
    _RELOCATABLE = ("model_name_or_path", "trust_remote_code")

    def __init__(
        self, *, model_name_or_path="SmolLM2-135M", layer=-1, pooling="mean", r=32, lora_alpha=32,
        lora_dropout=0.05, target_modules=None, head_init="zeros", max_steps=None, max_epochs=10,
        batch_size=16, learning_rate=2e-3, head_learning_rate=2e-3, warmup=0.1,
        lr_schedule="linear", weight_decay=0.01, max_grad_norm=1.0, label_smoothing=0.0,
        base_dropout=False, validation_fraction=0.1, n_iter_no_change=None, eval_every=None,
        max_length=128, device="auto", torch_dtype="auto", trust_remote_code=False,
        random_state=None, progress=True,
    ):
        self.model_name_or_path = model_name_or_path
        self.layer = layer
        self.pooling = pooling
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = target_modules
        self.head_init = head_init
        self.max_steps = max_steps
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.warmup = warmup
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.label_smoothing = label_smoothing
        self.base_dropout = base_dropout
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.eval_every = eval_every
        self.max_length = max_length
        self.device = device
        self.torch_dtype = torch_dtype
        self.trust_remote_code = trust_remote_code
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the probe, start the head from it, and fine-tune the adapters and the head.

        Parameters
        ----------
        X : sequence of str
        y : array-like of shape (n_texts,)
            Class labels (strings work), at least two classes.

        Returns
        -------
        self : HFLoRAClassifier
        """
        start = time.perf_counter()
        texts = check_texts(X)
        y = column_or_1d(y, warn=True)
        classes, yi = check_labelled(texts, y, estimator=self)
        peft = import_peft()
        import torch

        base = self._load_base()
        layer = resolve_layer(self.layer, base.n_layers, self.model_name_or_path)
        targets = resolve_target_modules(base.model, self.target_modules)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, val = validation_split(
            yi, None if self.n_iter_no_change is None else self.validation_fraction, seed)
        encoded = encoded_texts(base, texts, self.max_length)
        features = pooled_states(base, [encoded[i] for i in train], layer, self.pooling,
                           self.batch_size, self.progress, "Probing").double().cpu().numpy()
        probe = fit_start_probe(features, y[train])
        total = (self.max_epochs * math.ceil(len(train) / self.batch_size)
                 if self.max_steps is None else self.max_steps)
        warmup = (self.warmup if isinstance(self.warmup, Integral)
                  else round(self.warmup * total))
        weight, bias, *footing = probe_head(probe, len(classes))
        with seeded(torch, seed, base.device) as generator:
            model = with_adapter(peft, base, self._lora_config(peft, base, targets))
            head = torch.nn.Linear(base.hidden_size, len(classes), device=base.device)
            with torch.no_grad():
                start = self.head_init == "probe"
                head.weight.copy_(torch.from_numpy(weight * start))
                head.bias.copy_(torch.from_numpy(bias * start))
            history = Trainer(self, model, head, base, encoded, torch.as_tensor(yi), layer,
                              footing).run(train, val, generator, total, min(warmup, total))

        self.classes_ = classes
        self.probe_ = probe
        self.probe_C_ = float(np.ravel(probe[-1].C_)[0])
        self.probe_train_accuracy_ = float(probe.score(features, y[train]))
        self.start_loss_ = float(log_loss(y[train], probe.predict_proba(features),
                                          labels=classes))
        self.validation_indices_ = val
        self.layer_ = layer
        self.n_layers_ = base.n_layers
        self.hidden_size_ = base.hidden_size
        self.target_modules_ = targets
        self.base_fingerprint_ = base.resolved.fingerprint
        self.adapter_weights_ = {k: v.detach().float().cpu().numpy().copy()
                                 for k, v in peft.get_peft_model_state_dict(model).items()}
        # On raw features, as prediction reads them; training ran on the probe's footing.
        self.coef_, self.intercept_ = fold_scaler(head.weight.detach().double().cpu().numpy(),
                                                  head.bias.detach().double().cpu().numpy(),
                                                  *footing)
        for name, value in history.items():
            is_codes = name.startswith("validation_") and name.endswith("predictions_")
            setattr(self, name, classes[value] if is_codes and value is not None else value)
        self.model_params_ = {name: getattr(self, name) for name in self._MODEL_PARAMS}
        self.__dict__.pop("_loaded", None)  # a refit's predictions need the new adapter
        self.fit_time_ = time.perf_counter() - start
        return self

    # -------------------------------------------------------------- predict

    def decision_function(self, X):
        """The head's logits of each text (for two classes, class 1's minus class 0's).

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_classes) or (n_texts,)
        """
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities of each text (softmax of the logits).

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_classes)
        """
        logits = self._logits(X)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class of each text.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_texts,)
        """
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)]

    def predict_start(self, X):
        """The labels its start, the frozen ``probe_``, gives the texts ``X`` (a sequence of str).

        The other arm of the gain, text by text: the frozen base model's
        pooled states of ``layer_`` through ``probe_``, which is what the
        classifier predicted at step 0. Returns an ndarray of shape (n_texts,).
        """
        check_is_fitted(self)
        self._check_unchanged()
        pooled = self._pooled(self._load_base(), X, "Predicting (start)")
        return self.probe_.predict(pooled.double().cpu().numpy())

    def _logits(self, X):
        check_is_fitted(self)
        self._check_unchanged()
        import torch

        loaded = self.loaded_model()
        pooled = self._pooled(loaded, X, "Predicting")
        weight = torch.from_numpy(self.coef_).to(loaded.device, torch.float64)
        bias = torch.from_numpy(self.intercept_).to(loaded.device, torch.float64)
        return torch.nn.functional.linear(pooled.double(), weight, bias).cpu().numpy()

    def _pooled(self, loaded, X, desc):
        encoded = encoded_texts(loaded, check_texts(X), self.max_length)
        return pooled_states(loaded, encoded, self.layer_, self.pooling, self.batch_size,
                             self.progress, desc)

    def _check_unchanged(self):
        changed = [n for n in self._MODEL_PARAMS if getattr(self, n) != self.model_params_[n]]
        if changed:
            raise ValueError(f"{', '.join(changed)} changed since fit; call fit again.")

    # --------------------------------------------------------- the weights

    def loaded_model(self):
        """The base model with the adapter merged into its weights, as ``load_model`` gives models.

        Built once per instance (never pickled). The head is not part of it:
        ``HFEmbeddingTransformer`` can read the fine-tuned hidden states from it.

        Returns
        -------
        LoadedModel
            ``model`` has the LoRA weights merged; ``resolved.kind`` is "lora",
            ``resolved.name`` "<base name>+lora" and ``resolved.fingerprint``
            hashes the base fingerprint and the adapter's weights.
        """
        check_is_fitted(self)
        self._check_unchanged()
        key = (os.fspath(self.model_name_or_path), str(self.device), str(self.torch_dtype),
               self.trust_remote_code)
        cached = self.__dict__.get("_loaded")
        if cached is None or cached[0] != key:
            base, model = self._adapted()
            merged = model.merge_and_unload().eval().requires_grad_(False)
            resolved = ResolvedModel(f"{base.resolved.name}+lora", base.resolved.path, None, "lora",
                                     self._fingerprint())
            loaded = LoadedModel(base.tokenizer, merged, resolved, base.device, base.n_layers,
                                 base.hidden_size)
            self._loaded = cached = (key, loaded)
        return cached[1]

    def _adapted(self):
        """The base model, and a fresh copy with the fitted adapter (a peft model, unmerged)."""
        check_is_fitted(self)
        self._check_unchanged()
        return adapted_model(self)

    def _lora_config(self, peft, base, targets):
        return lora_config(peft, base.model, targets, r=self.r, lora_alpha=self.lora_alpha,
                           lora_dropout=self.lora_dropout)

    def _fingerprint(self):
        digest = hashlib.sha256(f"{self.base_fingerprint_}\n{self.r}\n{self.lora_alpha}".encode())
        for name in sorted(self.adapter_weights_):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.adapter_weights_[name]).tobytes())
        return digest.hexdigest()[:16]

    def _load_base(self):
        return load_model(self.model_name_or_path, device=self.device, torch_dtype=self.torch_dtype,
                          trust_remote_code=self.trust_remote_code, progress=self.progress)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_loaded", None)  # the merged weights: rebuilt from the base and the adapter
        return state

    # ---------------------------------------------------------- save, load

    def save_adapter(self, path):
        """Write the adapter (peft's format), the head and the parameters to a folder.

        ``peft.PeftModel.from_pretrained(base_model, path)`` reads the adapter
        alone; :meth:`load_adapter` reads it all back.

        Parameters
        ----------
        path : str or path-like
            A folder, created if needed.

        Returns
        -------
        path : pathlib.Path
        """
        return write_adapter(self, path)

    @classmethod
    def load_adapter(cls, path, **params):
        """A fitted classifier from a folder written by :meth:`save_adapter`.

        Parameters
        ----------
        path : str or path-like
        **params
            Parameters to change, e.g. ``model_name_or_path`` where the base
            model lives elsewhere, or ``device``. Not those that define what
            the head was trained on (``layer``, ``pooling``, ``r``,
            ``lora_alpha``, ``target_modules``): they need a new fit.

        Returns
        -------
        HFLoRAClassifier

        Raises
        ------
        ValueError
            If ``params`` change the layer, the pooling or the adapters' shape.
        """
        return read_adapter(cls, path, params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = True
        tags.requires_fit = True
        return tags
