"""The Llama-family text decoder (GGUF arch "llama"): hyperparameters, their checks against the weights,
the llama.* keys and the tensor plan. Q and K rows are permuted as llama.cpp's converter does, so that
RoPE rotates adjacent pairs (see permute_qk). Also registered on its own for text-only Llama checkpoints.

Fields absent from config.json take transformers' LlamaConfig defaults (published checkpoints omit the
fields that equal them); a shape field whose default does not fit the weights is reported as missing.
"""

from __future__ import annotations

import math

import numpy as np

from . import names, quantize
from .checkpoint import Checkpoint, Fields
from .errors import CheckpointError, ConvertError, MissingFieldError
from .registry import register
from .writer import GGUFFile, TensorPlan

# transformers' LlamaConfig defaults
LLAMA_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
}


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a Q or K projection [n_head * head_dim, n_in] from Hugging Face's half-split RoPE layout
    to llama.cpp's adjacent pairs: per head, rows (0..d/2-1, d/2..d-1) interleave as (0, d/2, 1, d/2+1, ...)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of permute_qk."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _permuted_reader(ckpt: Checkpoint, hf_name: str, n_head: int):
    def read(rows=None) -> np.ndarray:  # whole tensor: the permutation mixes rows within a head
        return permute_qk(ckpt.read(hf_name), n_head)

    return read


class _Dims:
    """Config values with their provenance, checked against tensor shapes."""

    def __init__(self, cfg: Fields, defaults: dict):
        self.cfg = cfg
        self.defaults = defaults
        self.defaulted: set[str] = set()

    def int(self, key: str, lo: int = 1, hi: int = 1 << 24) -> int:
        if not self.cfg.has(key):
            if key not in self.defaults:
                self.cfg.int(key)  # raises MissingFieldError
            self.defaulted.add(key)
            return self.defaults[key]
        return self.cfg.int(key, lo=lo, hi=hi)

    def float(self, key: str) -> float:
        if not self.cfg.has(key):
            self.defaulted.add(key)
            return float(self.defaults[key])
        return self.cfg.float(key)

    def check(self, key: str, value: int, actual: int, tensor: str) -> None:
        if value == actual:
            return
        if key in self.defaulted:
            raise MissingFieldError(
                f"{self.cfg.where}: field '{self.cfg.name(key)}' is missing and transformers' default "
                f"({value}) does not match tensor '{tensor}' ({actual})"
            )
        raise CheckpointError(
            f"{self.cfg.where}: field '{self.cfg.name(key)}' = {value} does not match tensor '{tensor}' ({actual})"
        )


# The Hugging Face rope types the engine runs: "linear" as llama.cpp's rope.scaling.type linear,
# "llama3" as its rope_freqs.weight divisors. dynamic (NTK), yarn and longrope are refused.
ROPE_TYPES = ("default", "linear", "llama3")


def llama3_rope_divisors(theta: float, dim: int, factor: float, low: float, high: float, old_ctx: int) -> np.ndarray:
    """[dim/2] float32: transformers' rope_type "llama3" frequencies as divisors of the plain ones
    (theta^(-2i/dim) / divisor), which is what llama.cpp stores in rope_freqs.weight. Wavelengths
    2 pi / freq shorter than old_ctx / high keep their frequency, those longer than old_ctx / low are
    divided by `factor`, and between them it blends: 1 / ((1 - s) / factor + s) with
    s = (old_ctx / wavelength - low) / (high - low) (Meta's Llama 3.1 scaling)."""
    freq = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    wavelen = 2.0 * np.pi / freq
    s = (old_ctx / wavelen - low) / (high - low)
    div = 1.0 / ((1.0 - s) / factor + s)
    div = np.where(wavelen < old_ctx / high, 1.0, div)
    div = np.where(wavelen > old_ctx / low, factor, div)
    return div.astype(np.float32)


class LlamaText:
    """The text part of a checkpoint. `tensors` maps GGUF names to table entries (names.Mapped).
    Callers run check_config(cfg) first, before mapping the tensors (map_tensors)."""

    def __init__(self, ckpt: Checkpoint, cfg: Fields, tensors: dict[str, names.Mapped], tie_default: bool = False):
        self.ckpt = ckpt
        self.cfg = cfg
        self.tensors = tensors
        d = _Dims(cfg, LLAMA_DEFAULTS)
        self.n_embd = d.int("hidden_size")
        self.n_ff = d.int("intermediate_size")
        self.n_layer = d.int("num_hidden_layers", hi=4096)
        self.n_head = d.int("num_attention_heads", hi=4096)
        self.n_head_kv = cfg.int("num_key_value_heads", self.n_head, lo=1, hi=self.n_head)
        if self.n_head % self.n_head_kv:
            raise CheckpointError(
                f"{cfg.where}: num_attention_heads {self.n_head} is not a multiple of "
                f"num_key_value_heads {self.n_head_kv}"
            )
        self.head_dim = cfg.int("head_dim", 0, lo=2, hi=4096) or self.n_embd // self.n_head
        if self.head_dim % 2:
            raise CheckpointError(f"{cfg.where}: head_dim {self.head_dim} is odd")
        self.n_ctx = d.int("max_position_embeddings")
        self.rms_eps = d.float("rms_norm_eps")
        if not 0.0 < self.rms_eps < 1.0:  # the engine's range
            raise cfg.bad("rms_norm_eps", "out of range (0 < eps < 1)")
        self.rope_theta = self._rope_theta(cfg, d)
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 1.0):
            raise CheckpointError(f"{cfg.where}: rope_theta = {self.rope_theta!r}: out of range (a finite number > 1)")
        self.rope_type, self.rope_factor, self.rope_divisors = self._rope_scaling(cfg)
        self.tied = bool(cfg.get("tie_word_embeddings", tie_default))
        # biases on q, k, v, o (attention_bias) and gate, up, down (mlp_bias): transformers makes
        # them from these flags alone (a bias tensor without its flag is dropped there)
        self.attention_bias = bool(cfg.get("attention_bias", False))
        self.mlp_bias = bool(cfg.get("mlp_bias", False))

        emb = self._meta("token_embd.weight")
        self.n_vocab = emb.shape[0]
        d.check("hidden_size", self.n_embd, emb.shape[1], emb.name)
        vocab_cfg = d.int("vocab_size")
        d.check("vocab_size", vocab_cfg, self.n_vocab, emb.name)
        blocks = {m.bid for m in tensors.values() if m.bid is not None}
        n_blocks = max(blocks) + 1 if blocks else 0
        d.check("num_hidden_layers", self.n_layer, n_blocks, "blk.*")
        q = self._meta("blk.0.attn_q.weight")
        k = self._meta("blk.0.attn_k.weight")
        if q.shape[0] != self.n_head * self.head_dim:
            if "num_attention_heads" in d.defaulted:
                d.check("num_attention_heads", self.n_head, q.shape[0] // self.head_dim, q.name)
            raise CheckpointError(
                f"{cfg.where}: num_attention_heads {self.n_head} x head_dim {self.head_dim} "
                f"does not match tensor '{q.name}' ({q.shape[0]} rows)"
            )
        if k.shape[0] != self.n_head_kv * self.head_dim:
            raise CheckpointError(
                f"{cfg.where}: num_key_value_heads {self.n_head_kv} x head_dim {self.head_dim} "
                f"does not match tensor '{k.name}' ({k.shape[0]} rows)"
            )
        d.check("intermediate_size", self.n_ff, self._meta("blk.0.ffn_gate.weight").shape[0], "ffn_gate")
        if "output.weight" not in tensors and not self.tied:
            raise CheckpointError(f"{ckpt.dir}: lm_head.weight is missing and tie_word_embeddings is false")
        self.expected = self._expected_shapes()
        for gname in tensors:
            if gname not in self.expected:  # e.g. a bias without its config flag
                flag = "mlp_bias" if ".ffn_" in gname else "attention_bias"
                raise CheckpointError(
                    f"{cfg.where}: tensor '{tensors[gname].hf_name}' is in the checkpoint but "
                    f"'{cfg.name(flag)}' is not true (transformers would not use it)"
                )
        for gname, shape in self.expected.items():
            m = self._meta(gname)
            if tuple(m.shape) != shape:
                raise CheckpointError(
                    f"{ckpt.dir}: tensor '{m.name}' has shape {list(m.shape)}, expected {list(shape)}"
                )

    @staticmethod
    def check_config(cfg: Fields) -> None:
        """Refuses the settings the llama arch cannot run, naming the setting; called before the
        tensors are mapped, so that e.g. attention_bias is named rather than its bias tensors.

        Raises ConvertError."""
        act = cfg.str("hidden_act", "silu")
        if act not in ("silu", "swish"):  # transformers' ACT2FN: "swish" is SiLU too
            raise ConvertError(f"{cfg.where}: '{cfg.name('hidden_act')}' = {act!r} is not supported (Llama uses silu)")
        for flag in ("attention_bias", "mlp_bias"):
            if not isinstance(cfg.get(flag, False), bool):
                raise cfg.bad(flag, "expected true or false")
        # transformers 5 folds a legacy rope_scaling into rope_parameters (the scaling wins over a
        # default rope_parameters), so either one's type decides the positions.
        for key in ("rope_parameters", "rope_scaling"):
            v = cfg.get(key)
            if v is None:
                continue
            if not isinstance(v, dict):
                raise ConvertError(f"{cfg.where}: '{cfg.name(key)}' = {v!r} is not supported (expected an object)")
            rtype = v.get("rope_type", v.get("type", "default"))
            if rtype not in ROPE_TYPES:
                raise ConvertError(
                    f"{cfg.where}: '{cfg.name(key)}' = {v} is not supported (rope type {rtype!r}; "
                    f"supported: {', '.join(ROPE_TYPES)})"
                )

    def _rope_scaling(self, cfg: Fields) -> tuple[str, float, np.ndarray | None]:
        """(rope type, linear factor, llama3 divisors [head_dim/2] or None) from the section whose
        type applies: a legacy rope_scaling with a type wins over rope_parameters, as in transformers 5."""
        for key in ("rope_scaling", "rope_parameters"):
            if cfg.get(key) is None:
                continue
            sec = cfg.sub(key)
            rtype = sec.get("rope_type", sec.get("type", "default"))
            if rtype == "default":
                continue
            factor = sec.float("factor")
            if not (math.isfinite(factor) and factor > 0.0):
                raise sec.bad("factor", "out of range (a finite number > 0)")
            if rtype == "linear":
                return rtype, factor, None
            low, high = sec.float("low_freq_factor"), sec.float("high_freq_factor")
            old_ctx = sec.int("original_max_position_embeddings", lo=1)
            if not (0.0 < low < high and math.isfinite(high)):
                raise sec.bad("high_freq_factor", f"out of range (0 < low_freq_factor = {low} < high_freq_factor)")
            return rtype, factor, llama3_rope_divisors(self.rope_theta, self.head_dim, factor, low, high, old_ctx)
        return "default", 1.0, None

    @staticmethod
    def _rope_theta(cfg: Fields, d: _Dims) -> float:
        rp = cfg.get("rope_parameters")
        if isinstance(rp, dict) and isinstance(rp.get("rope_theta"), (int, float)):
            return float(rp["rope_theta"])
        return d.float("rope_theta")

    def _meta(self, gguf_name: str):
        m = self.tensors.get(gguf_name)
        if m is None:
            raise CheckpointError(f"{self.ckpt.dir}: the checkpoint has no tensor for '{gguf_name}'")
        return self.ckpt.meta(m.hf_name)

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        E, F, V = self.n_embd, self.n_ff, self.n_vocab
        Q, KV = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
        out = {"token_embd.weight": (V, E), "output_norm.weight": (E,)}
        if "output.weight" in self.tensors:
            out["output.weight"] = (V, E)
        for i in range(self.n_layer):
            p = f"blk.{i}."
            out.update(
                {
                    p + "attn_norm.weight": (E,),
                    p + "attn_q.weight": (Q, E),
                    p + "attn_k.weight": (KV, E),
                    p + "attn_v.weight": (KV, E),
                    p + "attn_output.weight": (E, Q),
                    p + "ffn_norm.weight": (E,),
                    p + "ffn_gate.weight": (F, E),
                    p + "ffn_up.weight": (F, E),
                    p + "ffn_down.weight": (E, F),
                }
            )
            if self.attention_bias:
                out.update({p + "attn_q.bias": (Q,), p + "attn_k.bias": (KV,), p + "attn_v.bias": (KV,)})
                out[p + "attn_output.bias"] = (E,)
            if self.mlp_bias:
                out.update({p + "ffn_gate.bias": (F,), p + "ffn_up.bias": (F,), p + "ffn_down.bias": (E,)})
        return out

    # ---- output

    def write_keys(self, out: GGUFFile) -> None:
        a = "llama."
        out.u32(a + "context_length", self.n_ctx)
        out.u32(a + "embedding_length", self.n_embd)
        out.u32(a + "block_count", self.n_layer)
        out.u32(a + "feed_forward_length", self.n_ff)
        out.u32(a + "rope.dimension_count", self.head_dim)
        out.f32(a + "rope.freq_base", self.rope_theta)
        if self.rope_type == "linear":  # llama.cpp's keys; "llama3" is the tensor rope_freqs.weight
            out.str(a + "rope.scaling.type", "linear")
            out.f32(a + "rope.scaling.factor", self.rope_factor)
        out.u32(a + "attention.head_count", self.n_head)
        out.u32(a + "attention.head_count_kv", self.n_head_kv)
        out.f32(a + "attention.layer_norm_rms_epsilon", self.rms_eps)
        out.u32(a + "vocab_size", self.n_vocab)
        if self.head_dim * self.n_head != self.n_embd:
            out.u32(a + "attention.key_length", self.head_dim)
            out.u32(a + "attention.value_length", self.head_dim)

    def plans(self, outtype: str) -> list[TensorPlan]:
        """Tensor plans in llama.cpp's order: token_embd, blocks, output_norm, output."""
        order = ["token_embd.weight"]
        for i in range(self.n_layer):
            order += [
                f"blk.{i}.{n}"
                for n in (
                    "attn_norm.weight",
                    "attn_q.weight",
                    "attn_q.bias",
                    "attn_k.weight",
                    "attn_k.bias",
                    "attn_v.weight",
                    "attn_v.bias",
                    "attn_output.weight",
                    "attn_output.bias",
                    "ffn_norm.weight",
                    "ffn_gate.weight",
                    "ffn_gate.bias",
                    "ffn_up.weight",
                    "ffn_up.bias",
                    "ffn_down.weight",
                    "ffn_down.bias",
                )
                if f"blk.{i}.{n}" in self.expected
            ]
        order.append("output_norm.weight")
        if "output.weight" in self.tensors:
            order.append("output.weight")
        plans = []
        if self.rope_divisors is not None:  # first, as llama.cpp's converter writes it
            div = self.rope_divisors
            plans.append(
                TensorPlan(
                    "rope_freqs.weight", div.shape, quantize.Q.F32, lambda rows: div, chunkable=False, source="rope"
                )
            )
        for gname in order:
            m = self.tensors[gname]
            shape = self.expected[gname]
            qtype = quantize.tensor_type(
                m.kind, outtype, shape, tied_output=self.tied and "output.weight" not in self.tensors
            )
            if gname.endswith(("attn_q.weight", "attn_k.weight", "attn_q.bias", "attn_k.bias")):
                n = self.n_head if ".attn_q." in gname else self.n_head_kv  # biases permuted as the rows
                read = _permuted_reader(self.ckpt, m.hf_name, n)
                plans.append(TensorPlan(gname, shape, qtype, read, chunkable=False, source=m.hf_name))
            else:
                plans.append(TensorPlan(gname, shape, qtype, self.ckpt.reader(m.hf_name), source=m.hf_name))
        return plans


def map_tensors(ckpt: Checkpoint, parts) -> dict[str, dict[str, names.Mapped]]:
    """part -> {gguf name -> entry} for every checkpoint tensor; a tensor the table does not know is an
    error (nothing is dropped silently)."""
    out: dict[str, dict[str, names.Mapped]] = {}
    for hf in ckpt.tensors:
        m = names.map_name(hf, parts)
        if m is None:
            raise CheckpointError(f"{ckpt.dir}: tensor '{hf}' is not one the converter knows")
        if m.gguf_name is None:
            continue
        part = out.setdefault(m.part, {})
        if m.gguf_name in part:
            raise CheckpointError(
                f"{ckpt.dir}: tensors '{part[m.gguf_name].hf_name}' and '{hf}' both map to '{m.gguf_name}'"
            )
        part[m.gguf_name] = m
    return out


@register(("LlamaForCausalLM",), ("llama",))
class LlamaConverter:
    """A text-only Llama checkpoint -> one GGUF (arch llama)."""

    def __init__(self, ckpt: Checkpoint, opts):
        self.ckpt = ckpt
        self.opts = opts
        LlamaText.check_config(ckpt.config)
        parts = map_tensors(ckpt, names.LLAMA_PARTS)
        self.text = LlamaText(ckpt, ckpt.config, parts.get("text", {}))

    def outputs(self) -> list[GGUFFile]:
        from .tokenizer import load_vocab

        if self.opts.mmproj_out is not None:
            raise ConvertError(f"{self.ckpt.dir}: --mmproj-out needs a vision model; this is a text-only Llama")
        out = GGUFFile(self.opts.out, "llama")
        common_header(out, self.ckpt, self.opts)
        self.text.write_keys(out)
        load_vocab(self.ckpt.dir, self.text.n_vocab, self.ckpt.config).write(out)
        write_tsa(out, self.opts, self.text.n_layer)
        for p in self.text.plans(self.opts.outtype):
            out.add(p)
        return [out]


def common_header(out: GGUFFile, ckpt: Checkpoint, opts, description: str | None = None) -> None:
    out.str("general.name", opts.name or ckpt.dir.resolve().name)
    if description:
        out.str("general.description", description)
    out.u32("general.file_type", int(quantize.FILE_TYPES[opts.outtype]))
    if opts.outtype in ("q8_0", "q4_0"):
        out.u32("general.quantization_version", 2)


def write_tsa(out: GGUFFile, opts, n_layer: int) -> None:
    from gguf import GGUFValueType

    if opts.tsa_layers is None:
        return
    for layer in opts.tsa_layers:
        if not 0 <= layer < n_layer:
            raise ConvertError(f"--tsa-layers: layer {layer} is out of range [0, {n_layer})")
    out.arr("akvq.tsa_layers", sorted(set(opts.tsa_layers)), GGUFValueType.INT32)
