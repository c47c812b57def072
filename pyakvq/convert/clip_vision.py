"""The CLIP vision tower (llama.cpp's `v.*` tensors and `clip.vision.*` keys): hyperparameters from
vision_config (absent fields take transformers' CLIPVisionConfig defaults, checked against the weights),
the feature layer(s) as hidden-state indices, and the tensor plan.

Feature layers are written as llama.cpp does (`clip.vision.feature_layer`, an array of non-negative
hidden-state indices: 0 = the embeddings after pre-LN, i = the output of block i-1), converted from the
Hugging Face value x as x if x >= 0 else block_count + 1 + x. All blocks are stored (block_count is the
checkpoint's layer count); a runtime runs blocks up to the deepest feature layer.
"""

from __future__ import annotations

from . import names, quantize
from .checkpoint import Checkpoint, Fields
from .errors import CheckpointError, ConvertError
from .llama_text import _Dims
from .writer import GGUFFile, TensorPlan

CLIP_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
    "num_channels": 3,
}
ACTIVATIONS = ("quick_gelu", "gelu")  # clip.use_gelu false / true


class ClipVision:
    def __init__(self, ckpt: Checkpoint, cfg: Fields, tensors: dict[str, names.Mapped], feature_layer):
        self.ckpt = ckpt
        self.cfg = cfg
        self.tensors = tensors
        d = _Dims(cfg, CLIP_VISION_DEFAULTS)
        self.n_embd = d.int("hidden_size")
        self.n_ff = d.int("intermediate_size")
        self.n_layer = d.int("num_hidden_layers", hi=4096)
        self.n_head = d.int("num_attention_heads", hi=4096)
        self.image_size = d.int("image_size")
        self.patch_size = d.int("patch_size")
        self.eps = d.float("layer_norm_eps")
        self.act = cfg.str("hidden_act", "quick_gelu", choices=ACTIVATIONS)
        if d.int("num_channels") != 3:
            raise ConvertError(f"{cfg.where}: '{cfg.name('num_channels')}' must be 3 (RGB)")
        if self.n_embd % self.n_head:
            raise CheckpointError(
                f"{cfg.where}: hidden_size {self.n_embd} is not a multiple of num_attention_heads {self.n_head}"
            )
        if self.image_size % self.patch_size:
            raise CheckpointError(
                f"{cfg.where}: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        self.n_patches = (self.image_size // self.patch_size) ** 2

        pe = self._meta("v.patch_embd.weight")
        d.check("hidden_size", self.n_embd, pe.shape[0], pe.name)
        d.check("patch_size", self.patch_size, pe.shape[-1], pe.name)
        pos = self._meta("v.position_embd.weight")
        if pos.shape[0] != self.n_patches + 1:
            d.check("image_size", self.image_size, int(round((pos.shape[0] - 1) ** 0.5)) * self.patch_size, pos.name)
        blocks = {m.bid for m in tensors.values() if m.bid is not None}
        d.check("num_hidden_layers", self.n_layer, max(blocks) + 1 if blocks else 0, "v.blk.*")
        d.check("intermediate_size", self.n_ff, self._meta("v.blk.0.ffn_up.weight").shape[0], "mlp.fc1")

        layers = feature_layer if isinstance(feature_layer, list) else [feature_layer]
        if not layers or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
            raise CheckpointError(
                f"config.json: vision_feature_layer = {feature_layer!r}: expected an integer or a list of integers"
            )
        self.feature_layers_hf = layers
        self.feature_layers = []
        for x in layers:
            idx = x if x >= 0 else self.n_layer + 1 + x
            if not 0 <= idx <= self.n_layer:
                raise CheckpointError(
                    f"config.json: vision_feature_layer {x} is out of range for {self.n_layer} vision layers"
                )
            self.feature_layers.append(idx)

        self.expected = self._expected_shapes()
        for gname, shape in self.expected.items():
            m = self._meta(gname)
            if tuple(m.shape) != shape:
                raise CheckpointError(
                    f"{ckpt.dir}: tensor '{m.name}' has shape {list(m.shape)}, expected {list(shape)}"
                )

    def _meta(self, gguf_name: str):
        m = self.tensors.get(gguf_name)
        if m is None:
            raise CheckpointError(f"{self.ckpt.dir}: the checkpoint has no vision tensor for '{gguf_name}'")
        return self.ckpt.meta(m.hf_name)

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        H, F, p = self.n_embd, self.n_ff, self.patch_size
        out = {
            "v.class_embd": (H,),
            "v.patch_embd.weight": (H, 3, p, p),
            "v.position_embd.weight": (self.n_patches + 1, H),
            "v.pre_ln.weight": (H,),
            "v.pre_ln.bias": (H,),
        }
        for i in range(self.n_layer):
            b = f"v.blk.{i}."
            for n in ("ln1", "ln2"):
                out[b + n + ".weight"] = (H,)
                out[b + n + ".bias"] = (H,)
            for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
                out[b + n + ".weight"] = (H, H)
                out[b + n + ".bias"] = (H,)
            out[b + "ffn_up.weight"] = (F, H)
            out[b + "ffn_up.bias"] = (F,)
            out[b + "ffn_down.weight"] = (H, F)
            out[b + "ffn_down.bias"] = (H,)
        return out

    def write_keys(self, out: GGUFFile) -> None:
        from gguf import GGUFValueType as T

        v = "clip.vision."
        out.bool("clip.use_gelu", self.act == "gelu")
        out.u32(v + "image_size", self.image_size)
        out.u32(v + "patch_size", self.patch_size)
        out.u32(v + "embedding_length", self.n_embd)
        out.u32(v + "feed_forward_length", self.n_ff)
        out.u32(v + "block_count", self.n_layer)
        out.u32(v + "attention.head_count", self.n_head)
        out.f32(v + "attention.layer_norm_epsilon", self.eps)
        out.arr(v + "feature_layer", self.feature_layers, T.INT32)
        out.str("akvq.vision.hidden_act", self.act)

    def plans(self, outtype: str) -> list[TensorPlan]:
        plans = []
        for gname, shape in self.expected.items():
            m = self.tensors[gname]
            qtype = quantize.tensor_type(m.kind, outtype, shape)
            read = self.ckpt.reader(m.hf_name)
            plans.append(TensorPlan(gname, shape, qtype, read, chunkable=len(shape) == 2, source=m.hf_name))
        return plans
