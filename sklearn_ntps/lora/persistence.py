"""Saving and loading a fitted :class:`~sklearn_ntps.lora.classifier.HFLoRAClassifier`.

The adapter in peft's own format (``peft.PeftModel.from_pretrained`` reads
it alone), the head as ``head.npz``, and the parameters, classes and fitted
metadata as JSON: a folder a user can hand on without pickles.
"""

from __future__ import annotations

import json
import os
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._warnings import warn_at_caller
from ..states.models import _progress_bars
from .adapters import import_peft, with_adapter

__all__ = ["adapted_model", "read_adapter", "write_adapter"]

_ADAPTER_JSON = "sklearn_ntps_lora.json"
_HEAD_FILE = "head.npz"
# Fitted attributes that save_adapter writes besides the weights and the head.
_FITTED_META = ("layer_", "n_layers_", "hidden_size_", "target_modules_", "base_fingerprint_",
                "loss_curve_", "validation_scores_", "validation_loss_curve_",
                "validation_steps_", "n_steps_", "best_step_", "probe_C_",
                "probe_train_accuracy_", "start_loss_", "validation_indices_",
                "validation_start_predictions_", "validation_predictions_", "fit_time_",
                "model_params_")
_FITTED_AS_IS = ("layer_", "n_layers_", "hidden_size_", "target_modules_", "base_fingerprint_",
                 "n_steps_", "best_step_", "probe_C_", "probe_train_accuracy_", "start_loss_",
                 "fit_time_", "model_params_")


def write_adapter(clf, path):
    """:meth:`HFLoRAClassifier.save_adapter`'s work: the adapter, the head, the parameters."""
    check_is_fitted(clf)
    path = Path(path)
    model = clf._adapted()[1]
    with warnings.catch_warnings(), _progress_bars(clf.progress):
        warnings.simplefilter("ignore")  # peft's model card looks for a hub repository
        model.save_pretrained(path)
    np.savez(path / _HEAD_FILE, coef=clf.coef_, intercept=clf.intercept_)
    params = {k: _jsonable(v) for k, v in clf.get_params().items()}
    if not isinstance(clf.random_state, Integral):  # a RandomState instance cannot be saved
        params["random_state"] = None
    fitted = {k: _jsonable(getattr(clf, k)) for k in _FITTED_META}
    classes = {"values": clf.classes_.tolist(), "dtype": clf.classes_.dtype.str}
    (path / _ADAPTER_JSON).write_text(json.dumps(
        {"params": params, "fitted": fitted, "classes": classes}, indent=1))
    return path


def adapted_model(clf):
    """The base model of a fitted classifier, and a fresh copy with its adapter (peft, unmerged)."""
    peft = import_peft()
    import torch

    base = clf._load_base()
    name = repr(clf.model_name_or_path)
    if base.hidden_size != clf.coef_.shape[1]:
        raise ValueError(f"{name} has hidden size {base.hidden_size}, but the head was trained "
                         f"on {clf.coef_.shape[1]} features.")
    if base.resolved.fingerprint != clf.base_fingerprint_:
        warn_at_caller(f"The files of {name} differ from those the adapter was trained on "
                       "(moved, re-installed, or other weights).")
    model = with_adapter(peft, base, clf._lora_config(peft, base, clf.target_modules_))
    state = {k: torch.from_numpy(v) for k, v in clf.adapter_weights_.items()}
    try:
        result = peft.set_peft_model_state_dict(model, state)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"The adapter does not fit {name}: {exc}") from None
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(f"The adapter does not fit {name}: unexpected "
                         f"{result.unexpected_keys[:3]}, missing {missing[:3]}.")
    return base, model.eval()


def read_adapter(cls, path, params):
    """:meth:`HFLoRAClassifier.load_adapter`'s work: a fitted classifier of class ``cls``."""
    import_peft()
    from peft.utils import load_peft_weights

    path = Path(path)
    meta = json.loads((path / _ADAPTER_JSON).read_text())
    saved = {k: v for k, v in meta["params"].items() if k in cls._get_param_names()}
    changed = [k for k in cls._MODEL_PARAMS if k in params and k not in cls._RELOCATABLE
               and _jsonable(params[k]) != saved.get(k)]
    if changed:
        raise ValueError(f"load_adapter cannot change {', '.join(changed)}: the head was "
                         "trained on those; fit a new classifier instead.")
    est = cls(**saved).set_params(**params)
    for name, value in meta["fitted"].items():
        if name in _FITTED_META:  # an older file may hold names since renamed
            setattr(est, name,
                    value if value is None or name in _FITTED_AS_IS else np.asarray(value))
    est.model_params_ = {**{k: saved.get(k) for k in cls._MODEL_PARAMS},
                         **{k: v for k, v in params.items() if k in cls._RELOCATABLE}}
    classes = meta["classes"]
    est.classes_ = np.asarray(classes["values"],
                              dtype=None if classes["dtype"] == "|O" else classes["dtype"])
    with np.load(path / _HEAD_FILE) as head:
        est.coef_, est.intercept_ = head["coef"], head["intercept"]
    est.adapter_weights_ = {k: v.float().numpy() for k, v in
                            load_peft_weights(str(path), device="cpu").items()}
    return est


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value).removeprefix("torch.")  # a torch.device or dtype
