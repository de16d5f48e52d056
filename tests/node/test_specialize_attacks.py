"""Attacks on `cairn node specialize` / `cairn model eval --node` (issue 11 item 5, review): hostile model
files, an unpinned or bad coordinator key, an --epsilon that fits the remaining figure but not the cap's
filter, an --out over the base model, a write that fails after the spend. Each is refused naming the
file/field or the rule, before anything is spent. No member data is needed: these are cheap.
"""

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from cairn.cli import cli
from model.features import HashedNgramFeaturizer
from model.reward_model import RewardHead, save_model
from node.evaluate import EvalError, compare_on_node
from node.node_dir import NodeDir
from node.specialize import SpecializeError, load_base
from node.status import privacy_budget
from privacy.policy import Policy
from protos import bundle as bundle_format
from protos import bundle_pb2

FEAT = HashedNgramFeaturizer(dim=16)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    head = RewardHead(FEAT.dim, 4, "r")
    return save_model(head, {"featurizer": FEAT.config()}, tmp_path / "m" / "base.safetensors")


class _Boom:  # what a pickle-loading reader would run
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_model_files_are_refused_naming_file_and_field(model, tmp_path):
    cfg = json.loads(model.with_suffix(".json").read_text())

    def variant(name, weights=None, config=None):
        d = tmp_path / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(weights if weights is not None else model.read_bytes())
        (d / "model.json").write_text(config if config is not None else json.dumps(cfg))
        return d

    deep = variant("deep", config="[" * 100_000 + "]" * 100_000)  # nesting past the stack: no RecursionError
    with pytest.raises(SpecializeError, match=r"deep/model\.json: not JSON"):
        load_base(deep)
    big = variant("big", config=json.dumps({**cfg, "pad": "x" * (1 << 20)}))
    with pytest.raises(SpecializeError, match=r"big/model\.json: .*bytes, more than a model config's"):
        load_base(big)
    huge = variant("huge", config=json.dumps({**cfg, "head": {**cfg["head"], "hidden": 10**9}}))
    with pytest.raises(SpecializeError, match=r"field 'head\.hidden' .*policy rule max_hidden"):
        load_base(huge)  # refused before a 10^9-wide head is allocated
    (tmp_path / "padded.bin").write_bytes(model.read_bytes() + b"\0" * (2 << 20))
    padded = variant("padded", weights=(tmp_path / "padded.bin").read_bytes())
    with pytest.raises(SpecializeError, match=r"padded/model\.safetensors: .*bytes, more than the .* field 'head'"):
        load_base(padded)  # a weights file larger than its head: refused before safetensors reads it

    marker = tmp_path / "pwned"
    pickled = variant("pickled", weights=pickle.dumps(_Boom(str(marker))))
    with pytest.raises(SpecializeError, match=r"pickled/model\.safetensors: does not hold the weights"):
        load_base(pickled)
    assert not marker.exists()  # never unpickled

    state = {k: v.clone() for k, v in RewardHead(FEAT.dim, 4, "r").state_dict().items()}
    for name, value in (("nan", float("nan")), ("large", 1e6)):
        bad = {k: v.clone() for k, v in state.items()}
        bad["fc1.weight"][0, 0] = value
        save_file(bad, str(tmp_path / f"{name}.bin"))
        d = variant(name, weights=(tmp_path / f"{name}.bin").read_bytes())
        with pytest.raises(SpecializeError, match=rf"{name}/model\.safetensors: holds (NaN|weights of magnitude)"):
            load_base(d)


def test_eval_checks_its_models_and_their_recorded_share(node_dir, model, tmp_path):
    cfg = json.loads(model.with_suffix(".json").read_text())
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "model.safetensors").write_bytes(model.read_bytes())
    (wide / "model.json").write_text(json.dumps({**cfg, "featurizer": {**cfg["featurizer"], "dim": 10**8}}))
    with pytest.raises(EvalError, match=r"--global: .*wide/model\.json: field 'featurizer\.dim'.*max_feature_dim"):
        compare_on_node(node_dir, {"global": wide})
    for share in (True, 5, "0.2", None, float("nan")):  # a share that would score people it trained on
        d = tmp_path / f"share-{share}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(model.read_bytes())
        (d / "model.json").write_text(json.dumps({**cfg, "specialization": {"holdout_share": share}}))
        with pytest.raises(EvalError, match=r"--specialised: .*model\.json: field 'specialization\.holdout_share'"):
            compare_on_node(node_dir, {"specialised": d})
    assert compare_on_node(node_dir, {"global": model})["accuracy"] == {"global": None}


def test_epsilon_within_the_remaining_figure_but_not_the_filter_is_refused(model, tmp_path):
    # DP-SGD calibrated to epsilon 1 (PLD) adds about 1.43 to the RDP filter's figure the cap is enforced on:
    # with a cap of 1.3, --epsilon 1 is "within the remaining 1.3" yet cannot be given without more noise.
    nd = NodeDir.init(tmp_path / "node", "c", policy=Policy(community="c", epsilon_cap=1.3, min_contributors_noise=0.0))
    res = _run("node", "specialize", nd.path, "--from", model, "--out", tmp_path / "o.safetensors", "--epsilon", "1")
    assert res.exit_code != 0 and "policy rule epsilon_cap" in res.output and "privacy filter" in res.output
    assert "nothing was spent" in res.output and not (tmp_path / "o.safetensors").exists()
    assert privacy_budget(nd)["entries"] == 0
    # the noisy min_contributors test's own spend is counted in before it is spent
    nd2 = NodeDir.init(tmp_path / "node2", "c2", policy=Policy(community="c2", epsilon_cap=1.5, min_contributors_noise=1.0))
    res = _run("node", "specialize", nd2.path, "--from", model, "--out", tmp_path / "o.safetensors", "--epsilon", "1")
    assert res.exit_code != 0 and "policy rule epsilon_cap" in res.output and privacy_budget(nd2)["entries"] == 0


def _bundle(path, model):
    path.mkdir()
    (path / "model").mkdir()
    for name in ("model.safetensors", "model.json"):
        (path / "model" / name).write_bytes(model.with_name("base." + name.split(".")[1]).read_bytes())
    m = bundle_pb2.BundleManifest(format=bundle_format.FORMAT, federation_id="f")
    for rel in (bundle_format.MODEL, bundle_format.MODEL_CONFIG):
        m.files.add(path=rel, sha256=bundle_format.sha256_file(path / rel))
    bundle_format.write_manifest(path, m)
    return path


def test_bundle_needs_a_pinned_key_and_a_good_pin_and_out_not_over_the_base(node_dir, model, tmp_path):
    bundle = _bundle(tmp_path / "b", model)
    out = tmp_path / "o.safetensors"
    res = _run("node", "specialize", node_dir.path, "--from", bundle, "--out", out)
    assert res.exit_code != 0 and "not pinned" in res.output and "--allow-unpinned" in res.output
    res = _run("node", "specialize", node_dir.path, "--from", bundle, "--out", out, "--allow-unpinned")
    assert res.exit_code != 0 and "does not verify" in res.output  # nobody signed it: pinned or not
    res = _run("node", "specialize", node_dir.path, "--from", bundle, "--out", out, "--coordinator-key", "zz")
    assert res.exit_code != 0 and "--coordinator-key" in res.output and "64 hex digits" in res.output
    (tmp_path / "coord.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    res = _run("node", "specialize", node_dir.path, "--from", bundle, "--out", out, "--coordinator-key", tmp_path / "coord.key")
    assert res.exit_code != 0 and "PRIVATE key" in res.output
    res = _run("node", "specialize", node_dir.path, "--from", model, "--out", model.with_suffix(".json"))
    assert res.exit_code != 0 and "is the base model --from names" in res.output
    assert model.read_bytes() == (tmp_path / "m" / "base.safetensors").read_bytes()
    assert privacy_budget(node_dir)["entries"] == 0 and not out.exists()


def test_a_write_that_fails_after_the_release_keeps_the_model(node_dir, tmp_path):
    from node.specialize import _save

    (tmp_path / "a-file").write_text("")
    head = RewardHead(FEAT.dim, 4, "r")
    with pytest.raises(SpecializeError, match=r"cannot write the model .*ledger entry 7.*saved at .*specialize-x"):
        _save(node_dir, head, {"featurizer": FEAT.config()}, tmp_path / "a-file" / "m.safetensors", "specialize-x", 7)
    kept = node_dir.path / "specialized" / "specialize-x.safetensors"
    assert kept.is_file() and np.isfinite(load_base(kept).head.fc1.weight.detach().numpy()).all()
