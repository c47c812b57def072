"""LLaVA (LlavaForConditionalGeneration: CLIP vision tower + MLP projector + Llama decoder).

One output file by default: arch "llama" with the text model under llama.cpp's names and keys, the
vision tower and projector as `v.*` / `mm.*` with `clip.*` keys, and what our engine needs beyond
llama.cpp's keys under `akvq.vision.*` (models/convert/README.md has the table). With mmproj_out, llama.cpp's
two-file layout instead: the text model alone in `out` and the vision part in an arch "clip" file.

Image preprocessing comes from processor_config.json (`image_processor`, transformers 5) or
preprocessor_config.json: resize the shortest edge (resample filter), center-crop to the vision
tower's image size, rescale, normalize; LLaVA-1.5's pad-to-square mode when the image processor has
`do_pad: true` (LlavaImageProcessor) or config.json has `image_aspect_ratio: "pad"` (original LLaVA).
"""

from __future__ import annotations

import logging

from . import chat_turn, names
from .checkpoint import Checkpoint, Fields, read_json
from .clip_vision import ClipVision
from .errors import CheckpointError, ConvertError, MissingFileError, UnknownArchitectureError
from .llama_text import LlamaText, common_header, map_tensors, write_tsa
from .registry import register
from .tokenizer import load_vocab
from .writer import GGUFFile, TensorPlan

log = logging.getLogger("pyakvq.convert")

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
STRATEGIES = ("default", "full")
PROJECTOR_ACTS = ("gelu", "gelu_pytorch_tanh", "quick_gelu", "silu", "relu")
# transformers' LlavaConfig defaults
LLAVA_DEFAULTS = {
    "image_token_index": 32000,
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "projector_hidden_act": "gelu",
}


class Preprocessing:
    """What the image processor does, as the GGUF keys describe it."""

    def __init__(self, d, image_size: int, config: Fields):
        pc = read_json(d / "processor_config.json", required=False)
        if pc is not None and isinstance(pc.get("image_processor"), dict):
            ip, where = (
                Fields(pc["image_processor"], "processor_config.json", "image_processor."),
                "processor_config.json",
            )
        else:
            data = read_json(d / "preprocessor_config.json", required=False)
            if data is None:
                raise MissingFileError(
                    f"{d}: no image processor settings (expected preprocessor_config.json or "
                    "processor_config.json with an 'image_processor' object)"
                )
            ip, where = Fields(data, "preprocessor_config.json"), "preprocessor_config.json"
        self.where = where
        if not ip.bool("do_resize", True) or not ip.bool("do_center_crop", True):
            raise ConvertError(
                f"{where}: only resize-shortest-edge + center-crop preprocessing is supported "
                "(do_resize and do_center_crop must be true)"
            )
        size = ip.get("size", {"shortest_edge": image_size})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        if not isinstance(size, dict) or not isinstance(size.get("shortest_edge"), int):
            raise ConvertError(
                f"{where}: field '{ip.name('size')}' = {size!r}: only {{'shortest_edge': N}} is supported"
            )
        self.shortest_edge = size["shortest_edge"]
        crop = ip.get("crop_size", {"height": image_size, "width": image_size})
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        if not isinstance(crop, dict) or crop.get("height") != image_size or crop.get("width") != image_size:
            raise CheckpointError(
                f"{where}: field '{ip.name('crop_size')}' = {crop!r} does not match the vision "
                f"tower's image_size {image_size}"
            )
        r = ip.int("resample", 3)
        if r not in RESAMPLE:
            raise ip.bad("resample", f"unknown filter (known: {RESAMPLE})")
        self.resample = RESAMPLE[r]
        self.rescale = ip.float("rescale_factor", 1 / 255) if ip.bool("do_rescale", True) else 1.0
        if ip.bool("do_normalize", True):
            self.mean = [float(x) for x in ip.get("image_mean", OPENAI_CLIP_MEAN)]
            self.std = [float(x) for x in ip.get("image_std", OPENAI_CLIP_STD)]
        else:
            self.mean, self.std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise CheckpointError(f"{where}: image_mean / image_std must hold 3 values (std > 0)")
        aspect = config.get("image_aspect_ratio")
        self.pad = bool(ip.bool("do_pad", False)) or aspect == "pad"
        # transformers' LlavaImageProcessor and the original LLaVA pad with int(255 * mean)
        self.pad_color = [int(x * 255) for x in self.mean] if ip.bool("do_normalize", True) else [0, 0, 0]

    def write_keys(self, out: GGUFFile) -> None:
        from gguf import GGUFValueType as T

        out.arr("clip.vision.image_mean", self.mean, T.FLOAT32)
        out.arr("clip.vision.image_std", self.std, T.FLOAT32)
        out.u32("akvq.vision.resize_shortest_edge", self.shortest_edge)
        out.str("akvq.vision.resample", self.resample)
        out.f32("akvq.vision.rescale_factor", self.rescale)
        out.str("akvq.vision.pad_mode", "pad" if self.pad else "crop")
        if self.pad:
            out.arr("akvq.vision.pad_color", self.pad_color, T.INT32)


@register(("LlavaForConditionalGeneration",), ("llava",))
class LlavaConverter:
    def __init__(self, ckpt: Checkpoint, opts):
        self.ckpt = ckpt
        self.opts = opts
        cfg = ckpt.config
        text_cfg = cfg.sub("text_config")
        vision_cfg = cfg.sub("vision_config")
        tmt = text_cfg.get("model_type", "llama")
        if tmt != "llama":
            raise UnknownArchitectureError(
                f"config.json: text_config.model_type '{tmt}' is not supported (supported: llama)"
            )
        vmt = vision_cfg.get("model_type", "clip_vision_model")
        if vmt != "clip_vision_model":
            raise UnknownArchitectureError(
                f"config.json: vision_config.model_type '{vmt}' is not supported (supported: clip_vision_model)"
            )
        LlamaText.check_config(text_cfg)
        parts = map_tensors(ckpt, names.LLAVA_PARTS)
        for part in ("text", "vision", "projector"):
            if part not in parts:
                raise CheckpointError(f"{ckpt.dir}: the checkpoint has no {part} tensors")
        self.text = LlamaText(ckpt, text_cfg, parts["text"], tie_default=bool(cfg.get("tie_word_embeddings", False)))
        self.strategy = cfg.str(
            "vision_feature_select_strategy", LLAVA_DEFAULTS["vision_feature_select_strategy"], choices=STRATEGIES
        )
        feature_layer = cfg.get("vision_feature_layer", LLAVA_DEFAULTS["vision_feature_layer"])
        self.vision = ClipVision(ckpt, vision_cfg, parts["vision"], feature_layer)
        self.projector_act = cfg.str(
            "projector_hidden_act", LLAVA_DEFAULTS["projector_hidden_act"], choices=PROJECTOR_ACTS
        )
        key = (
            "image_token_id" if cfg.has("image_token_id") and not cfg.has("image_token_index") else "image_token_index"
        )
        self.image_token_id = cfg.int(key, LLAVA_DEFAULTS["image_token_index"], lo=0)
        if self.image_token_id >= self.text.n_vocab:
            raise CheckpointError(
                f"config.json: {key} {self.image_token_id} is outside the vocabulary "
                f"({self.text.n_vocab} tokens)"
                + ("" if cfg.has(key) else f" (field '{key}' is missing; this is its default)")
            )
        self.projector = parts["projector"]
        self._check_projector()
        self.pre = Preprocessing(ckpt.dir, self.vision.image_size, cfg)

    def _check_projector(self) -> None:
        d_in = self.vision.n_embd * len(self.vision.feature_layers)
        d_out = self.text.n_embd
        for gname in ("mm.0.weight", "mm.2.weight"):
            if gname not in self.projector:
                raise CheckpointError(f"{self.ckpt.dir}: the projector tensor for '{gname}' is missing")
        w0 = self.ckpt.meta(self.projector["mm.0.weight"].hf_name)
        w2 = self.ckpt.meta(self.projector["mm.2.weight"].hf_name)
        hidden = w0.shape[0]
        want = {
            "mm.0.weight": (hidden, d_in),
            "mm.2.weight": (d_out, hidden),
            "mm.0.bias": (hidden,),
            "mm.2.bias": (d_out,),
        }
        for gname, m in self.projector.items():
            meta = self.ckpt.meta(m.hf_name)
            if tuple(meta.shape) != want[gname]:
                raise CheckpointError(
                    f"{self.ckpt.dir}: tensor '{meta.name}' has shape {list(meta.shape)}, expected {list(want[gname])}"
                )
        if ("mm.0.bias" in self.projector) != ("mm.2.bias" in self.projector):
            raise CheckpointError(f"{self.ckpt.dir}: the projector has a bias on one linear layer only")
        self.projection_dim = w2.shape[0]

    def _projector_plans(self, outtype: str) -> list[TensorPlan]:
        from . import quantize

        plans = []
        for gname in ("mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"):
            m = self.projector.get(gname)
            if m is None:
                continue
            shape = tuple(self.ckpt.meta(m.hf_name).shape)
            read = self.ckpt.reader(m.hf_name)
            plans.append(
                TensorPlan(
                    gname,
                    shape,
                    quantize.tensor_type(m.kind, outtype, shape),
                    read,
                    chunkable=len(shape) == 2,
                    source=m.hf_name,
                )
            )
        return plans

    def _vision_keys(self, out: GGUFFile, image_token: str) -> None:
        out.bool("clip.has_vision_encoder", True)
        out.bool("clip.has_llava_projector", True)
        out.str("clip.projector_type", "mlp")
        out.u32("clip.vision.projection_dim", self.projection_dim)
        self.vision.write_keys(out)
        self.pre.write_keys(out)
        out.str("akvq.vision.select_strategy", self.strategy)
        out.str("akvq.vision.projector_hidden_act", self.projector_act)
        out.u32("akvq.vision.image_token_id", self.image_token_id)
        out.str("akvq.vision.image_token", image_token)

    def outputs(self) -> list[GGUFFile]:
        o = self.opts
        vocab = load_vocab(self.ckpt.dir, self.text.n_vocab, self.ckpt.config.sub("text_config"))
        image_token = vocab.tokens[self.image_token_id]
        if image_token.startswith("[PAD"):  # a padding row: no tokenizer file names the token
            raise CheckpointError(
                f"{self.ckpt.dir}: the image token id {self.image_token_id} (image_token_index) has no token in the "
                "tokenizer (tokenizer.json added_tokens, tokenizer_config.json added_tokens_decoder, "
                "added_tokens.json): the converted model could never take an image"
            )
        text = GGUFFile(o.out, "llama")
        common_header(text, self.ckpt, o)
        self.text.write_keys(text)
        if o.mmproj_out is None:
            self._vision_keys(text, image_token)
        vocab.write(text)
        template = vocab.chat_templates.get("")
        if template:  # the template's one-turn image chat for akvq-cli, which has no Jinja
            bos = vocab.tokens[vocab.bos] if vocab.bos is not None else None
            eos = vocab.tokens[vocab.eos] if vocab.eos is not None else None
            turn = chat_turn.image_turn(template, image_token, bos, eos)
            if turn is not None:
                text.str(chat_turn.KEY, turn)
        write_tsa(text, o, self.text.n_layer)
        for p in self.text.plans(o.outtype):
            text.add(p)
        vision_plans = self.vision.plans(o.outtype) + self._projector_plans(o.outtype)
        if o.mmproj_out is None:
            for p in vision_plans:
                text.add(p)
            return [text]
        mm = GGUFFile(o.mmproj_out, "clip")
        common_header(mm, self.ckpt, o, description="image encoder for LLaVA")
        mm.bool("clip.has_text_encoder", False)
        self._vision_keys(mm, image_token)
        for p in vision_plans:
            mm.add(p)
        return [text, mm]
