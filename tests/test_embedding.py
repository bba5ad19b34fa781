import functools
import pickle
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_ntps import (
    HFEmbeddingTransformer,
    Moments,
    NTPSScorer,
    ntps_score,
)
from sklearn_ntps.states import cache, embedding, resources
from sklearn_ntps.states.models import load_model

from builders import LABELS, TEXTS, cv_by_hand


def direct_states(path, texts, layer):
    """Each text alone through transformers: no padding, no batching."""
    loaded = load_model(path)
    out = []
    with torch.no_grad():
        for text in texts:
            enc = loaded.tokenizer(text, return_tensors="pt")
            hidden = loaded.model(**enc, output_hidden_states=True).hidden_states[layer]
            out.append(hidden[0].double().numpy())
    return out


def count_forwards(monkeypatch, path):
    loaded = load_model(path)
    calls = []
    original = loaded.model.forward

    @functools.wraps(original)
    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", counted)
    return calls


def emb(path, **params):
    params.setdefault("progress", False)
    return HFEmbeddingTransformer(model_name_or_path=path, **params)


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_pooled_features_equal_direct_computation(tiny_llama, ntps_cache, layer):
    states = direct_states(tiny_llama, TEXTS, layer)
    got = emb(tiny_llama, layer=layer, batch_size=3).fit_transform(TEXTS)
    np.testing.assert_allclose(got, [s.mean(axis=0) for s in states], atol=1e-5)
    last = emb(tiny_llama, layer=layer, pooling="last", batch_size=3).fit_transform(TEXTS)
    np.testing.assert_allclose(last, [s[-1] for s in states], atol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "whitened"])
def test_tokens_output_gives_the_ntps_of_raw_states(tiny_llama, ntps_cache, variant):
    texts = TEXTS * 3
    labels = LABELS * 3
    moments = emb(tiny_llama, output="tokens", batch_size=4).fit_transform(texts)
    assert len(moments) == len(texts) and moments.n_features == 16
    raw = direct_states(tiny_llama, texts, -1)
    expected = ntps_score(raw, labels, n_components=4, variant=variant)
    got = ntps_score(moments, labels, n_components=4, variant=variant)
    assert got == pytest.approx(expected, abs=1e-6)


def test_left_and_right_padding_agree(tiny_llama, ntps_cache):
    tok = load_model(tiny_llama).tokenizer
    right = emb(tiny_llama, output="tokens", cache=False).fit_transform(TEXTS)
    tok.padding_side = "left"
    try:
        left = emb(tiny_llama, output="tokens", cache=False).fit_transform(TEXTS)
    finally:
        tok.padding_side = "right"
    np.testing.assert_allclose(left.pooled, right.pooled, atol=1e-5)
    np.testing.assert_allclose(left.c0, right.c0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(left.c1, right.c1, rtol=1e-5, atol=1e-6)


def test_order_of_texts_is_kept(tiny_llama, ntps_cache):
    forward = emb(tiny_llama, batch_size=2).fit_transform(TEXTS)
    backward = emb(tiny_llama, batch_size=3).fit_transform(TEXTS[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-5)


def test_grid_search_over_layers_runs_the_model_once_per_fold(tiny_llama, ntps_cache, monkeypatch):
    calls = count_forwards(monkeypatch, tiny_llama)
    texts, labels = TEXTS * 4, LABELS * 4
    cv = KFold(2, shuffle=True, random_state=0)
    pipe = make_pipeline(emb(tiny_llama, output="tokens", batch_size=8), NTPSScorer(n_components=4))
    GridSearchCV(pipe, {"hfembeddingtransformer__layer": [1]}, cv=cv).fit(texts, labels)
    one_layer = len(calls)
    calls.clear()
    shutil.rmtree(ntps_cache / "embeddings")
    cache.clear_memory()
    grid = GridSearchCV(
        pipe, {"hfembeddingtransformer__layer": [0, 1, 2],
               "hfembeddingtransformer__pooling": ["mean", "last"]},
        cv=cv,
    ).fit(texts, labels)
    assert len(calls) == one_layer > 0
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))


def test_cross_val_score_in_a_pipeline(tiny_llama, ntps_cache):
    texts, labels = TEXTS * 3, LABELS * 3
    pipe = make_pipeline(emb(tiny_llama, output="tokens"), NTPSScorer(n_components=0.5))
    cv = KFold(3, shuffle=True, random_state=0)  # unshuffled, each fold would be TEXTS
    scores = cross_val_score(pipe, texts, labels, cv=cv)
    expected = cv_by_hand(tiny_llama, texts, labels, cv, NTPSScorer(n_components=0.5))
    np.testing.assert_array_equal(scores, expected)
    assert len(set(expected)) == 3  # three folds, three different scores


def test_disk_cache_survives_a_new_process_and_interrupted_writes(tiny_llama, ntps_cache,
                                                                  monkeypatch):
    first = emb(tiny_llama).fit_transform(TEXTS)
    entries = list((ntps_cache / "embeddings").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    cache.clear_memory()
    calls = count_forwards(monkeypatch, tiny_llama)
    np.testing.assert_array_equal(emb(tiny_llama).fit_transform(TEXTS), first)
    assert calls == []
    # Tokens need the moments the pooled-only entry lacks: the model runs again.
    emb(tiny_llama, output="tokens").fit_transform(TEXTS)
    assert len(calls) == 1

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cache.clear_memory()
    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emb(tiny_llama).fit_transform(TEXTS[:3])
    assert list((ntps_cache / "embeddings").iterdir()) == entries


def test_corrupt_cache_entry_is_ignored(tiny_llama, ntps_cache):
    first = emb(tiny_llama).fit_transform(TEXTS)
    (entry,) = (ntps_cache / "embeddings").iterdir()
    (entry / "meta.json").write_text("{not json")
    cache.clear_memory()
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        again = emb(tiny_llama).fit_transform(TEXTS)
    np.testing.assert_allclose(again, first)


def test_cache_in_memory_only_and_off(tiny_llama, ntps_cache, monkeypatch):
    calls = count_forwards(monkeypatch, tiny_llama)
    emb(tiny_llama, cache=False).fit_transform(TEXTS)
    emb(tiny_llama, cache=False).fit_transform(TEXTS)
    assert len(calls) == 1 and not ntps_cache.exists()


def test_truncation_is_counted(tiny_llama, ntps_cache):
    with pytest.warns(UserWarning, match="3 of 8 texts were truncated to max_length=6"):
        out = emb(tiny_llama, max_length=6, output="tokens").fit_transform(TEXTS)
    assert out.n_pairs == sum(min(len(t.split()), 6) - 1 for t in TEXTS)


def test_pickle_leaves_the_weights_out(tiny_llama, ntps_cache):
    fitted = emb(tiny_llama).fit(TEXTS)
    blob = pickle.dumps(fitted)
    assert len(blob) < 5_000
    np.testing.assert_allclose(pickle.loads(blob).transform(TEXTS), fitted.transform(TEXTS))


def test_no_progress_output_when_disabled(tiny_llama, ntps_cache, capfd):
    emb(tiny_llama, cache=False).fit_transform(TEXTS)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_fitted_attributes(tiny_llama, ntps_cache):
    fitted = emb(tiny_llama, layer=-2).fit()
    assert (fitted.n_layers_, fitted.layer_, fitted.n_features_out_) == (3, 1, 16)
    assert fitted.get_feature_names_out()[0] == "hidden0"


@pytest.mark.parametrize(
    "X, match",
    [
        (["fine", ""], "Text 1 is empty"),
        (["fine", "   "], "Text 1 is empty"),
        (["fine", None], "Text 1 is None"),
        (["fine", 3], "Text 1 is a int"),
        ("just one string", "not a single string"),
        ([], "X is empty"),
    ],
)
def test_bad_texts(tiny_llama, ntps_cache, X, match):
    with pytest.raises(ValueError, match=match):
        emb(tiny_llama).fit(X)
    fitted = emb(tiny_llama).fit()
    with pytest.raises(ValueError, match=match):
        fitted.transform(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"pooling": "max"}, "'pooling' parameter .* must be a str among"),
        ({"output": "logits"}, "'output' parameter .* must be a str among"),
        ({"layer": 1.5}, "'layer' parameter .* must be an instance of 'int'"),
        ({"batch_size": 0}, "'batch_size' parameter .* must be an int in the range \\[1, inf\\)"),
        ({"max_length": 0}, "'max_length' parameter"),
        ({"cache": 3}, "'cache' parameter"),
    ],
)
def test_bad_parameters_fail_before_loading(tiny_llama, monkeypatch, params, match):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(embedding, "load_model", no_loading)
    with pytest.raises(ValueError, match=match):
        emb(tiny_llama, **params).fit(TEXTS)


def test_layer_out_of_range(tiny_llama, ntps_cache):
    with pytest.raises(ValueError, match=r"layer=3 is out of range: .* has 3 hidden states"):
        emb(tiny_llama, layer=3).fit()
    with pytest.raises(ValueError, match="layer=-4 is out of range"):
        emb(tiny_llama, layer=-4).fit()


def test_unknown_model_and_missing_path(tmp_path, ntps_cache):
    with pytest.raises((ValueError, FileNotFoundError), match="SmolLM2-135M"):
        emb("no-such-model-anywhere").fit()
    with pytest.raises((ValueError, FileNotFoundError), match="does not exist"):
        emb(str(tmp_path / "missing" / "model")).fit()


def test_texts_are_not_mutated(tiny_llama, ntps_cache):
    texts = list(TEXTS)
    emb(tiny_llama, output="tokens").fit_transform(texts)
    assert texts == TEXTS


@pytest.mark.slow
def test_encoder_model_with_other_hidden_size(ntps_cache):
    try:
        fitted = emb("all-MiniLM-L6-v2").fit()
    except (ImportError, ValueError, FileNotFoundError) as exc:  # the package is not installed
        pytest.skip(str(exc))
    out = fitted.transform(TEXTS)
    assert out.shape == (8, 384)
    moments = fitted.set_params(output="tokens").transform(TEXTS)
    assert moments.c0.shape == (384, 384)


# --- the real bundled model (small inputs) ------------------------------------------------------

SENTENCES = [
    "My card payment was declined at the shop.",
    "How long does a transfer to another bank take?",
    "I want to top up my account with cash.",
    "Why is there an extra fee on my statement?",
    "The exchange rate looks wrong for my last payment.",
    "Can I get a physical card sent to a new address?",
    "The film was a delight from start to finish.",
    "A boring plot and wooden acting ruined it.",
    "Win a free holiday, text WIN to 80086 now!",
    "Are we still meeting for lunch tomorrow?",
    "Who wrote the novel that the movie is based on?",
    "Where is the nearest cash machine?",
]


@pytest.fixture(scope="module")
def smollm2():
    from sklearn_ntps.states.models import resolve_model

    try:
        resolve_model("SmolLM2-135M")
    except (ValueError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    return "SmolLM2-135M"


@pytest.mark.slow
@pytest.mark.parametrize("layer", [0, 15, 30])
def test_smollm2_features_equal_transformers(smollm2, ntps_cache, layer):
    texts = SENTENCES[:6]
    states = direct_states(smollm2, texts, layer)
    got = emb(smollm2, layer=layer, batch_size=4).fit_transform(texts)
    expected = np.array([s.mean(axis=0) for s in states])
    # Padded batches change float32 summation order: the noise scales with
    # the layer's largest activation, not with each feature.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    moments = emb(smollm2, layer=layer, output="tokens", batch_size=4).fit_transform(texts)
    labels = [0, 1, 0, 1, 1, 0]
    for variant in ("paper", "whitened"):
        assert ntps_score(moments, labels, n_components=8, variant=variant) == pytest.approx(
            ntps_score(states, labels, n_components=8, variant=variant), abs=1e-4)


@pytest.mark.slow
def test_smollm2_grid_search_over_every_layer_runs_the_model_once_per_split(
        smollm2, ntps_cache, monkeypatch):
    calls = count_forwards(monkeypatch, smollm2)
    texts = SENTENCES
    labels = [0, 1, 0, 1, 1, 0] * 2
    cv = KFold(3, shuffle=True, random_state=0)
    pipe = make_pipeline(emb(smollm2, output="tokens", batch_size=16), NTPSScorer(n_components=4))
    GridSearchCV(pipe, {"hfembeddingtransformer__layer": [-1]}, cv=cv,
                 refit=False).fit(texts, labels)
    one_layer = len(calls)
    # Same folds from an empty cache, every layer: no more forward passes.
    calls.clear()
    cache.clear_memory()
    shutil.rmtree(ntps_cache / "embeddings")
    grid = GridSearchCV(pipe, {"hfembeddingtransformer__layer": list(range(31))}, cv=cv,
                        refit=False).fit(texts, labels)
    assert len(calls) == one_layer == 6  # 3 folds x (train, test), one batch each
    scores = grid.cv_results_["mean_test_score"]
    assert scores.shape == (31,)
    for layer in (0, 15, 30):
        by_hand = cv_by_hand(smollm2, texts, labels, cv, NTPSScorer(n_components=4), layer=layer)
        assert scores[layer] == pytest.approx(np.mean(by_hand), abs=1e-12)



def test_parameters_are_read_at_transform(tiny_llama, ntps_cache):
    est = emb(tiny_llama, layer=0).fit()
    at0 = est.transform(TEXTS)
    at2 = est.set_params(layer=2).transform(TEXTS)
    np.testing.assert_array_equal(at2, emb(tiny_llama, layer=2).fit_transform(TEXTS))
    assert not np.array_equal(at0, at2)
    assert isinstance(est.set_params(output="tokens").transform(TEXTS), Moments)
    with pytest.raises(ValueError, match="model_name_or_path changed since fit"):
        est.set_params(model_name_or_path="all-MiniLM-L6-v2").transform(TEXTS)


def test_a_cache_hit_loads_no_weights(tiny_llama, ntps_cache, monkeypatch):
    est = emb(tiny_llama).fit()
    first = est.transform(TEXTS)
    restored = pickle.loads(pickle.dumps(est))
    cache.clear_memory()

    def no_loading(*args, **kwargs):
        raise AssertionError("a cache hit must not load the weights")

    monkeypatch.setattr(embedding, "load_model", no_loading)
    np.testing.assert_array_equal(restored.transform(TEXTS), first)


def test_truncation_warning_points_at_the_caller_also_on_cache_hits(tiny_llama, ntps_cache):
    pipe = make_pipeline(emb(tiny_llama, max_length=6))
    for _ in range(2):  # a miss, then a hit
        with pytest.warns(UserWarning, match="3 of 8 texts were truncated") as record:
            pipe.fit_transform(TEXTS)
        assert record[0].filename == __file__


def test_kept_layers_only(tiny_llama, ntps_cache, monkeypatch):
    calls = count_forwards(monkeypatch, tiny_llama)
    est = emb(tiny_llama, layers=[0, -1], output="tokens").fit()
    assert est.layers_ == [0, 2]
    stats = est._extract(TEXTS, with_moments=True)
    assert stats.c0.shape[0] == 2 and stats.pooled["mean"].shape[0] == 2 and stats.layers == (0, 2)
    full = emb(tiny_llama, output="tokens").fit()
    for layer in (0, 2):
        got = est.set_params(layer=layer).transform(TEXTS)
        ref = full.set_params(layer=layer).transform(TEXTS)
        np.testing.assert_allclose(got.c0, ref.c0, rtol=1e-6)
    assert [layer for layer, _ in est.transform_layers(TEXTS)] == [0, 2]
    with pytest.raises(ValueError, match="not among layers"):
        est.set_params(layer=1).transform(TEXTS)
    with pytest.raises(ValueError, match="layers must be"):
        emb(tiny_llama, layers=[7]).fit()
    # A grid over the kept layers: one forward pass for the kept set, one for the full.
    assert len(calls) == 2


def test_set_output_pandas(tiny_llama, ntps_cache):
    pd = pytest.importorskip("pandas")
    from sklearn import config_context

    with config_context(transform_output="pandas"):
        pooled = emb(tiny_llama).fit_transform(TEXTS)
        moments = emb(tiny_llama, output="tokens").fit_transform(TEXTS)
    assert isinstance(pooled, pd.DataFrame) and list(pooled.columns)[:2] == ["hidden0", "hidden1"]
    assert isinstance(moments, Moments) and len(moments) == len(TEXTS)
    # set_output on the estimator itself, not only the global configuration.
    fitted = emb(tiny_llama).fit().set_output(transform="pandas")
    table = fitted.transform(TEXTS)
    assert isinstance(table, pd.DataFrame)
    np.testing.assert_array_equal(table.to_numpy(), pooled.to_numpy())
    assert isinstance(fitted.set_params(output="tokens").transform(TEXTS), Moments)


def test_resources_are_checked_before_the_model_runs(tiny_llama, ntps_cache, monkeypatch):
    calls = count_forwards(monkeypatch, tiny_llama)
    monkeypatch.setattr(resources, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="layers=") as info:
        emb(tiny_llama, output="tokens").fit_transform(TEXTS)
    assert isinstance(info.value, ValueError) and calls == []


def test_a_stream_of_batches_gives_the_fit_of_all_texts(tiny_llama, ntps_cache):
    # One text per forward pass: float32 kernels then see the same shapes whatever the batching.
    kw = dict(model_name_or_path=tiny_llama, output="tokens", batch_size=1, progress=False)
    whole = HFEmbeddingTransformer(**kw).fit(TEXTS).transform(TEXTS)
    stream_emb = HFEmbeddingTransformer(**kw)
    scorer = NTPSScorer(n_components=4)
    batches = [slice(0, 3), slice(3, 8)]
    for b in batches:
        scorer.partial_fit(stream_emb.partial_fit(TEXTS[b]).transform(TEXTS[b]), LABELS[b])
    summed = sum(stream_emb.transform(TEXTS[b]) for b in batches)
    np.testing.assert_allclose(summed.c0, whole.c0, rtol=1e-12)
    np.testing.assert_array_equal(summed.pooled, whole.pooled)
    ref = NTPSScorer(n_components=4).fit(whole, LABELS)
    np.testing.assert_allclose(scorer.ntps_curve_, ref.ntps_curve_, atol=1e-10)
