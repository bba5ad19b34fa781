"""Running a model over texts: the length-sorted batches, every layer at once, input order."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn_ntps.states.extraction import (
    encode,
    extract_statistics,
    in_input_order,
    length_order,
    pooled_batch,
    shuffled_batches,
    split_batches,
)
from sklearn_ntps.states.models import load_model

from builders import TEXTS, require_bundled

# Fingerprints of the statistics of 24 BANKING77 texts through SmolLM2, every layer, written by
# the code whose bit-exact hash this test held on AVX2 only. Float32 kernels differ between
# instruction sets (AVX2, AVX-512, SSE4.2 moved them by at most 2e-6 of each norm), so they
# are compared at 1e-4 of the norm: 50 times that spread, far below what a change of padding,
# pooling, prefix sums or truncation makes.
BUNDLED_STATISTICS = Path(__file__).with_name("data") / "smollm2_banking77_statistics.json"
KERNEL_RTOL = 1e-4


def fingerprint(array):
    """Norm, and the dot product with a seeded +-1 vector: a change anywhere moves one."""
    signs = np.random.default_rng(0).choice([-1.0, 1.0], array.size)
    return np.array([np.linalg.norm(array), array.ravel() @ signs])


@pytest.mark.slow
def test_statistics_of_the_bundled_model_are_unchanged():
    from sklearn_ntps import HFEmbeddingTransformer
    from sklearn_ntps.datasets import load_dataset
    require_bundled("SmolLM2-135M")
    texts = load_dataset("banking77", split="train", n_samples=24, random_state=0).data
    emb = HFEmbeddingTransformer(output="tokens", cache=False, batch_size=8, max_length=64,
                                 device="cpu", progress=False).fit()
    by_pooling = {p: list(emb.set_params(pooling=p).transform_layers(texts))
                  for p in ("mean", "last")}
    reference = json.loads(BUNDLED_STATISTICS.read_text())["layers"]
    assert len(by_pooling["mean"]) == len(reference) == 31
    for (layer, mean), (_, last), ref in zip(by_pooling["mean"], by_pooling["last"], reference):
        assert mean.c0.dtype == np.float64 and mean.n_pairs == ref["n_pairs"]
        arrays = {"mean": mean.pooled, "last": last.pooled, "c0": mean.c0, "c1": mean.c1,
                  "context_sum": mean.context_sum, "target_sum": mean.target_sum}
        for name, array in arrays.items():
            expected = np.array(ref[name])
            np.testing.assert_allclose(fingerprint(array), expected, rtol=0,
                                       atol=KERNEL_RTOL * expected[0],
                                       err_msg=f"layer {layer}, {name}")


def test_batches_run_longest_first_and_rows_come_back_in_input_order():
    lengths = np.array([3, 9, 4, 9, 1, 2, 9])
    order = length_order(lengths)
    assert order.tolist() == [1, 3, 6, 2, 0, 5, 4]  # ties keep their input order
    assert [b.tolist() for b in split_batches(order, 3)] == [[1, 3, 6], [2, 0, 5], [4]]
    rows = lengths[order] * 10  # something computed batch after batch, in that order
    np.testing.assert_array_equal(rows[in_input_order(order)], lengths * 10)


@pytest.mark.parametrize("n_texts, batch_size", [(500, 16), (100, 4), (40, 8), (12, 8)])
def test_training_batches_change_from_one_pass_to_the_next(n_texts, batch_size):
    lengths = np.arange(n_texts)[::-1].copy()  # every length differs: sorting decides batches
    generator = torch.Generator().manual_seed(0)
    passes = [shuffled_batches(np.arange(n_texts), lengths, batch_size, generator)
              for _ in range(2)]
    for batches in passes:
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n_texts))
        assert all(len(b) <= batch_size for b in batches)
    # a pool as large as the training set would cut the same batches at every pass
    assert {frozenset(b.tolist()) for b in passes[0]} != {frozenset(b.tolist()) for b in passes[1]}


def test_sorted_and_unsorted_batches_give_the_same_statistics(tiny_llama):
    # One text per batch: float32 kernels then see the same shapes in either order.
    loaded = load_model(tiny_llama, progress=False)
    kw = dict(batch_size=1, max_length=32, progress=False)
    by_length = extract_statistics(loaded, TEXTS, **kw)
    as_given = extract_statistics(loaded, TEXTS, sort_by_length=False, **kw)
    for p in ("mean", "last"):
        np.testing.assert_array_equal(by_length.pooled[p], as_given.pooled[p])
    np.testing.assert_allclose(by_length.c0, as_given.c0, rtol=1e-12)
    assert (by_length.layers, by_length.truncation_limit, by_length.n_truncated) == \
        ((0, 1, 2), 32, 0)


def test_pooled_features_alone_pool_each_batch_at_once_with_the_same_bits(tiny_llama,
                                                                         monkeypatch):
    from sklearn_ntps.states import extraction, moments

    loaded = load_model(tiny_llama, progress=False)
    kw = dict(batch_size=2, max_length=32, progress=False)
    with_moments = extract_statistics(loaded, TEXTS, **kw)
    updates = []
    update = moments.MomentAccumulator.update
    monkeypatch.setattr(moments.MomentAccumulator, "update",
                        lambda self, states, lengths: updates.append(len(lengths))
                        or update(self, states, lengths))
    alone = extraction.extract_statistics(loaded, TEXTS, with_moments=False, **kw)
    assert updates == [2] * (len(TEXTS) // 2) + [1] * (len(TEXTS) % 2)  # no batch waits
    for p in ("mean", "last"):
        np.testing.assert_array_equal(alone.pooled[p], with_moments.pooled[p])
    assert alone.c0 is None


def test_moments_summed_on_the_model_device_equal_the_host_path(tiny_llama):
    # The CUDA path (states stay on the device, float64 sums there), run on the CPU device.
    loaded = load_model(tiny_llama, progress=False)
    kw = dict(batch_size=3, max_length=32, progress=False)
    host = extract_statistics(loaded, TEXTS, on_device=False, **kw).to_arrays()
    dev = extract_statistics(loaded, TEXTS, on_device=True, **kw).to_arrays()
    for name in ("pooled_mean", "pooled_last", "c0", "c1", "first"):
        np.testing.assert_allclose(dev[name], host[name], rtol=1e-12,
                                   atol=1e-12 * np.abs(host[name]).max())
    assert dev["n_pairs"] == host["n_pairs"]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_a_pooled_batch_follows_the_rule_of_the_statistics(tiny_llama, pooling):
    # LoRA's pooled batch (float32, autograd) and the statistics (float64 sums) pool alike,
    # whichever side the tokenizer pads.
    loaded = load_model(tiny_llama, progress=False)
    ids = encode(loaded, TEXTS, 32)[0]
    expected = extract_statistics(loaded, TEXTS, batch_size=8, progress=False).features(1, pooling)
    tok = loaded.tokenizer
    try:
        for side in ("right", "left"):
            tok.padding_side = side
            with torch.inference_mode():
                got = pooled_batch(loaded, ids, 1, pooling)
            assert got.dtype == torch.float32
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    finally:
        tok.padding_side = "right"


@pytest.fixture(scope="module", params=["llama", "bert"])
def deep_tiny(request, tmp_path_factory):
    from builders import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("models") / request.param,
                           architecture=request.param, n_layers=4, seed=3)
    return load_model(path, progress=False)


@pytest.mark.parametrize("last", [0, 1, 3])
def test_the_pass_stops_at_the_deepest_state_wanted_with_the_same_bits(deep_tiny, last):
    import torch

    from sklearn_ntps.states.extraction import (
        _Stop,
        encode,
        padded_batch,
        states_through,
        transformer_blocks,
    )

    blocks = transformer_blocks(deep_tiny.model)
    assert len(blocks) == 4
    called = []
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: called.append(i))
             for i, b in enumerate(blocks)]
    batch = padded_batch(deep_tiny, encode(deep_tiny, TEXTS, 32)[0])
    with torch.inference_mode():
        full = deep_tiny.model(**batch, output_hidden_states=True).hidden_states
        called.clear()
        with states_through(deep_tiny.model, last) as states, pytest.raises(_Stop):
            deep_tiny.model(**batch)
    for h in hooks:
        h.remove()
    assert called == list(range(last))  # block `last` and the later ones never ran
    assert len(states) == last + 1
    for mine, theirs in zip(states, full[: last + 1], strict=True):
        assert torch.equal(mine, theirs)


def test_statistics_of_early_layers_equal_the_full_pass(deep_tiny):
    from sklearn_ntps.states.extraction import states_through

    early = extract_statistics(deep_tiny, TEXTS, layers=[0, 2], progress=False)
    full = extract_statistics(deep_tiny, TEXTS, progress=False)
    for layer in (0, 2):
        a, b = early.layer(layer), full.layer(layer)
        np.testing.assert_array_equal(a.pooled, b.pooled)
        np.testing.assert_array_equal(a.c0, b.c0)
        np.testing.assert_array_equal(a.c1, b.c1)
    with pytest.raises(ValueError, match="Cannot stop"):
        with states_through(deep_tiny.model, 4):
            pass
