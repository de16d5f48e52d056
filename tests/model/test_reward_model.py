import json

import numpy as np
import pytest
import torch

from model.features import CachedEncoder, DictCache, HashedNgramFeaturizer
from model.reward_model import RewardHead, load_model, save_model, score, state_to_vector, vector_to_state


@pytest.mark.parametrize("combine,width", [("r", 1), ("r_pr", 2)])
def test_head_shapes(combine, width):
    h = RewardHead(16, hidden=8, combine=combine)
    assert h.fc1.in_features == 16 * width
    p, r = torch.randn(5, 3, 16), torch.randn(5, 3, 16)
    assert h.score_pr(p, r).shape == (5, 3)


def test_vector_roundtrip():
    torch.manual_seed(0)
    h, g = RewardHead(12, 6), RewardHead(12, 6)
    v = state_to_vector(h)
    assert v.dtype == np.float32 and v.size == sum(p.numel() for p in h.parameters())
    g.load_state_dict(vector_to_state(v, g))
    np.testing.assert_array_equal(state_to_vector(g), v)
    with pytest.raises(ValueError):
        vector_to_state(v[:-1], g)


def test_save_load_score(tmp_path):
    f = HashedNgramFeaturizer(dim=32)
    torch.manual_seed(1)
    h = RewardHead(32, 16)
    cfg = {"featurizer": f.config(), "training": {"steps": 3, "noise_multiplier": 1.1}}
    w = save_model(h, cfg, tmp_path / "m")
    assert w.name == "model.safetensors" and (tmp_path / "m" / "model.json").exists()
    prompts, resps = ["What is 2+2?", "Say hi"], ["It is 4.", "Hello there!"]
    s0 = score(h, f, prompts, resps)
    np.testing.assert_array_equal(score(h, CachedEncoder(f, DictCache()), prompts, resps), s0)
    for path in (tmp_path / "m", w):
        h2, cfg2 = load_model(path)
        assert cfg2["featurizer"] == f.config() and cfg2["training"]["steps"] == 3
        np.testing.assert_allclose(score(h2, f, prompts, resps), s0, rtol=1e-6)
    # a named file works too, config next to it
    w2 = save_model(h, cfg, tmp_path / "x" / "rm.safetensors")
    assert json.loads((tmp_path / "x" / "rm.json").read_text())["head"]["in_dim"] == 32
    np.testing.assert_allclose(score(load_model(w2)[0], f, prompts, resps), s0, rtol=1e-6)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")
