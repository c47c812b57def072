"""Tokenizer conversion: a Hugging Face tokenizer directory -> llama.cpp's tokenizer.* GGUF keys.

SentencePiece (`tokenizer.ggml.model` = "llama"): from tokenizer.model (parsed here: pieces, scores,
types, trainer and normalizer settings; no sentencepiece package needed) or, without it, from a
tokenizer.json whose model is BPE with byte fallback (scores derived from the merge ranks) or Unigram.
Byte-level BPE ("gpt2"): tokenizer.json vocabulary + merges, with the pre-tokenizer recognised from its
structure and named as llama.cpp names it (gpt-2, llama-bpe, qwen2, smollm).

Added tokens (tokenizer.json `added_tokens`, tokenizer_config.json `added_tokens_decoder`,
added_tokens.json) become control tokens (type 3) when special, user-defined (4) otherwise. The list is
padded with "[PAD<id>]" unused tokens (type 5) up to the embedding's row count, as llama.cpp does.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
import struct
from dataclasses import dataclass, field

from ..chat import template_variables
from .checkpoint import Fields, read_json
from .errors import CheckpointError, ConvertError, MissingFileError
from .writer import GGUFFile

log = logging.getLogger("pyakvq.convert")

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"  # SentencePiece's visible space

# The pre-tokenizer regexes of Llama 3 and Qwen2 (as their tokenizer.json files spell them).
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


@dataclass
class Vocab:
    model: str  # "llama" (SentencePiece) | "gpt2" (byte-level BPE)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    pre: str | None = None
    bos: int | None = None
    eos: int | None = None
    unk: int | None = None
    pad: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    prepend_scheme: str | None = None  # "first" | "always" | "never" (SentencePiece only)
    chat_templates: dict[str, str] = field(default_factory=dict)  # "" = the default template
    source: str = ""

    def id_of(self, text: str) -> int | None:
        try:
            return self.tokens.index(text)
        except ValueError:
            return None

    def write(self, out: GGUFFile) -> None:
        from gguf import GGUFValueType as T

        out.str("tokenizer.ggml.model", self.model)
        if self.pre is not None:
            out.str("tokenizer.ggml.pre", self.pre)
        out.arr("tokenizer.ggml.tokens", self.tokens, T.STRING)
        if self.scores is not None:
            out.arr("tokenizer.ggml.scores", self.scores, T.FLOAT32)
        out.arr("tokenizer.ggml.token_type", self.types, T.INT32)
        if self.merges:
            out.arr("tokenizer.ggml.merges", self.merges, T.STRING)
        for key, v in (("bos", self.bos), ("eos", self.eos), ("unknown", self.unk), ("padding", self.pad)):
            if v is not None:
                out.u32(f"tokenizer.ggml.{key}_token_id", v)
        if self.add_bos is not None:
            out.bool("tokenizer.ggml.add_bos_token", self.add_bos)
        if self.add_eos is not None:
            out.bool("tokenizer.ggml.add_eos_token", self.add_eos)
        if self.add_space_prefix is not None:
            out.bool("tokenizer.ggml.add_space_prefix", self.add_space_prefix)
        if self.prepend_scheme is not None:
            out.str("akvq.tokenizer.prepend_scheme", self.prepend_scheme)
        for name, tpl in self.chat_templates.items():
            out.str("tokenizer.chat_template" + (f".{name}" if name else ""), tpl)


# ---------------------------------------------------------------- SentencePiece model (protobuf)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = val = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        if not b & 0x80:
            return val, i
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message: ints for varint/fixed, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        fno, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated field")
        yield fno, wire, v


def _int32(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_sentencepiece(data: bytes) -> tuple[list[tuple[str, float, int]], dict, dict]:
    """(pieces [(text, score, type)], trainer spec, normalizer spec) of a SentencePiece ModelProto."""
    pieces, trainer, normalizer = [], {}, {}
    for fno, wire, v in _fields(data):
        if fno == 1 and wire == 2:  # SentencePiece piece
            text, score, typ = "", 0.0, NORMAL
            for f2, w2, v2 in _fields(v):
                if f2 == 1 and w2 == 2:
                    text = v2.decode("utf-8")
                elif f2 == 2 and w2 == 5:
                    (score,) = struct.unpack("<f", v2)
                elif f2 == 3 and w2 == 0:
                    typ = v2
            pieces.append((text, score, typ))
        elif fno == 2 and wire == 2:  # TrainerSpec
            names = {3: "model_type", 35: "byte_fallback", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
            for f2, w2, v2 in _fields(v):
                if f2 in names and w2 == 0:
                    trainer[names[f2]] = _int32(v2)
        elif fno == 3 and wire == 2:  # NormalizerSpec
            for f2, w2, v2 in _fields(v):
                if f2 == 1 and w2 == 2:
                    normalizer["name"] = v2.decode("utf-8", "replace")
                elif f2 == 3 and w2 == 0:
                    normalizer["add_dummy_prefix"] = bool(v2)
                elif f2 == 4 and w2 == 0:
                    normalizer["remove_extra_whitespaces"] = bool(v2)
    if not pieces:
        raise ValueError("no pieces")
    return pieces, trainer, normalizer


# ---------------------------------------------------------------- helpers


def _token_text(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def _added_tokens(d: pathlib.Path, tj: dict | None, tc: dict) -> dict[int, tuple[str, bool]]:
    """id -> (text, special) from every place transformers keeps added tokens."""
    out: dict[int, tuple[str, bool]] = {}
    extra = d / "added_tokens.json"
    if extra.is_file():
        for text, i in (read_json(extra) or {}).items():
            if isinstance(i, int):
                out[i] = (text, True)
    dec = tc.get("added_tokens_decoder")
    if isinstance(dec, dict):
        for k, v in dec.items():
            if str(k).isdigit() and _token_text(v) is not None:
                out[int(k)] = (_token_text(v), bool(v.get("special", False)))
    if tj is not None:
        for t in tj.get("added_tokens") or []:
            if isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("content"), str):
                out[t["id"]] = (t["content"], bool(t.get("special", False)))
    return out


def _find(obj, typ: str):
    """First dict with "type" == typ in a tokenizer.json component (walks Sequence wrappers)."""
    if isinstance(obj, dict):
        if obj.get("type") == typ:
            return obj
        for key in ("pretokenizers", "normalizers", "processors", "decoders"):
            for sub in obj.get(key) or []:
                r = _find(sub, typ)
                if r is not None:
                    return r
    return None


def _template_specials(tj: dict | None) -> tuple[str | None, str | None]:
    """(first, last) special token of the single-sequence template of tokenizer.json's post-processor."""
    tp = _find((tj or {}).get("post_processor"), "TemplateProcessing") if tj else None
    if tp is None:
        return None, None
    single = tp.get("single") or []

    def special(item):
        s = item.get("SpecialToken") if isinstance(item, dict) else None
        return s.get("id") if isinstance(s, dict) else None

    first = special(single[0]) if single else None
    last = special(single[-1]) if single else None
    return first, last


def chat_templates(d: pathlib.Path, tc: dict) -> dict[str, str]:
    """The chat template(s), looked up in the order transformers saves them: chat_template.jinja,
    chat_template.json, processor_config.json, tokenizer_config.json."""
    jinja = d / "chat_template.jinja"
    if jinja.is_file():
        return {"": jinja.read_text(encoding="utf-8")}
    for fname in ("chat_template.json", "processor_config.json"):
        data = read_json(d / fname, required=False) or {}
        if isinstance(data.get("chat_template"), str):
            return {"": data["chat_template"]}
    ct = tc.get("chat_template")
    if isinstance(ct, str):
        return {"": ct}
    if isinstance(ct, list):
        out = {}
        for item in ct:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                name = str(item.get("name", ""))
                out["" if name == "default" else name] = item["template"]
        if "" not in out and out:
            first = next(iter(out))
            out[""] = out.pop(first)
        return out
    return {}


# ---------------------------------------------------------------- SentencePiece vocabularies


def _spm_from_model(path: pathlib.Path) -> tuple[list[str], list[float], list[int], dict, dict]:
    try:
        pieces, trainer, normalizer = parse_sentencepiece(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a SentencePiece model ({e})") from None
    tokens = [p[0] for p in pieces]
    scores = [float(p[1]) for p in pieces]
    types = [int(p[2]) if 1 <= p[2] <= 6 else NORMAL for p in pieces]
    return tokens, scores, types, trainer, normalizer


def _spm_from_json(tj: dict, where: str) -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece-style vocabulary from tokenizer.json (BPE with byte fallback, or Unigram)."""
    model = tj["model"]
    if model.get("type") == "Unigram":
        vocab = model.get("vocab") or []
        tokens = [str(v[0]) for v in vocab]
        scores = [float(v[1]) for v in vocab]
        types = [BYTE if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t) else NORMAL for t in tokens]
        if isinstance(model.get("unk_id"), int) and 0 <= model["unk_id"] < len(types):
            types[model["unk_id"]] = UNKNOWN
        return tokens, scores, types
    vocab = model.get("vocab") or {}
    n = max(vocab.values()) + 1 if vocab else 0
    tokens = [""] * n
    for t, i in vocab.items():
        tokens[i] = t
    if any(t == "" for t in tokens):
        raise CheckpointError(f"{where}: the BPE vocabulary has gaps in its ids")
    # llama's SentencePiece BPE merges the pair whose result scores highest: score = -(merge rank)
    rank: dict[str, int] = {}
    for r, m in enumerate(model.get("merges") or []):
        a, b = (m.split(" ", 1) if isinstance(m, str) else m) if m else ("", "")
        rank.setdefault(a + b, r)
    n_merges = len(model.get("merges") or [])
    scores = [float(-rank[t]) if t in rank else float(-(n_merges + i)) for i, t in enumerate(tokens)]
    types = [BYTE if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t) else NORMAL for t in tokens]
    unk = model.get("unk_token")
    if isinstance(unk, str) and unk in vocab:
        types[vocab[unk]] = UNKNOWN
    return tokens, scores, types


def _prepend_scheme(tj: dict | None, tc: dict, add_dummy_prefix: bool | None) -> str:
    if tj is not None:
        ms = _find(tj.get("pre_tokenizer"), "Metaspace")
        if ms is not None:
            if isinstance(ms.get("prepend_scheme"), str):
                return ms["prepend_scheme"]
            return "always" if ms.get("add_prefix_space", True) else "never"
        pp = _find(tj.get("normalizer"), "Prepend")
        if pp is not None:
            return "always" if pp.get("prepend") == SPACE else "never"
        if tj.get("normalizer") is None and tj.get("pre_tokenizer") is None:
            return "never"
    if tc.get("add_prefix_space") is False:
        return "never"
    if tc.get("legacy") is False:
        return "first"
    return "always" if add_dummy_prefix is not False else "never"


# ---------------------------------------------------------------- byte-level BPE


def _bpe_pre(tj: dict, where: str) -> str:
    pre = tj.get("pre_tokenizer")
    norm = tj.get("normalizer")

    def bytelevel(p, regex: bool) -> bool:
        return (
            isinstance(p, dict)
            and p.get("type") == "ByteLevel"
            and bool(p.get("use_regex", True)) == regex
            and not p.get("add_prefix_space", False)
        )

    def split_regex(p) -> str | None:
        if isinstance(p, dict) and p.get("type") == "Split" and p.get("behavior") == "Isolated":
            pat = p.get("pattern") or {}
            return pat.get("Regex")
        return None

    name = None
    if bytelevel(pre, True):
        name = "gpt-2"
    elif isinstance(pre, dict) and pre.get("type") == "Sequence":
        seq = pre.get("pretokenizers") or []
        if (
            len(seq) == 2
            and seq[0].get("type") == "Digits"
            and seq[0].get("individual_digits")
            and bytelevel(seq[1], True)
        ):
            name = "smollm"
        elif len(seq) == 2 and bytelevel(seq[1], False):
            rx = split_regex(seq[0])
            name = {LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2"}.get(rx)
    if name is None:
        raise ConvertError(
            f"{where}: unsupported byte-level BPE pre-tokenizer {json.dumps(pre)[:200]} "
            "(supported: GPT-2's ByteLevel regex, SmolLM's digits + ByteLevel, the Llama 3 and Qwen2 split regexes)"
        )
    if norm is not None and not (name == "qwen2" and norm.get("type") == "NFC"):
        raise ConvertError(f"{where}: unsupported normalizer {json.dumps(norm)[:120]} for a byte-level BPE tokenizer")
    return name


# ---------------------------------------------------------------- entry point


def load_vocab(d: pathlib.Path, n_vocab: int, config_text: Fields | None = None) -> Vocab:
    """The tokenizer of the directory `d`, padded to `n_vocab` tokens (the embedding's rows)."""
    tc = read_json(d / "tokenizer_config.json", required=False) or {}
    tj_path = d / "tokenizer.json"
    tj = read_json(tj_path, required=False)
    if tj is not None and not isinstance(tj.get("model"), dict):
        raise CheckpointError(f"{tj_path}: no 'model' object")
    spm_path = d / "tokenizer.model"
    model_type = (tj or {}).get("model", {}).get("type")

    is_bytelevel = tj is not None and (
        _find(tj.get("pre_tokenizer"), "ByteLevel") is not None or _find(tj.get("decoder"), "ByteLevel") is not None
    )
    scores: list[float] | None
    merges = None
    pre = None
    normalizer: dict = {}
    trainer: dict = {}
    if spm_path.is_file() and not is_bytelevel:
        model = "llama"
        tokens, scores, types, trainer, normalizer = _spm_from_model(spm_path)
        source = spm_path.name
    elif tj is not None and model_type == "BPE" and is_bytelevel:
        model = "gpt2"
        pre = _bpe_pre(tj, tj_path.name)
        vocab = tj["model"].get("vocab") or {}
        n = max(vocab.values()) + 1 if vocab else 0
        tokens = [""] * n
        for t, i in vocab.items():
            tokens[i] = t
        types = [NORMAL] * n
        scores = None
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"].get("merges") or []]
        source = tj_path.name
    elif tj is not None and (model_type == "Unigram" or (model_type == "BPE" and tj["model"].get("byte_fallback"))):
        model = "llama"
        tokens, scores, types = _spm_from_json(tj, tj_path.name)
        source = tj_path.name
    elif tj is not None:
        raise ConvertError(
            f"{tj_path}: unsupported tokenizer model '{model_type}' (supported: SentencePiece, byte-level BPE)"
        )
    else:
        raise MissingFileError(f"{d}: no tokenizer (expected tokenizer.model or tokenizer.json)")

    # added tokens
    added = _added_tokens(d, tj, tc)
    for i in sorted(added):
        text, special = added[i]
        typ = CONTROL if special else USER_DEFINED
        if i < len(tokens):
            if tokens[i] != "" and tokens[i] != text:
                raise CheckpointError(
                    f"{d}: added token {text!r} has id {i}, which the vocabulary gives to {tokens[i]!r}"
                )
            tokens[i] = text
            if types[i] in (NORMAL, USER_DEFINED, CONTROL) or tokens[i] == "":
                types[i] = typ
            continue
        while len(tokens) < i:  # a gap: filler tokens as llama.cpp writes them
            tokens.append(f"[PAD{len(tokens)}]")
            types.append(UNUSED)
            if scores is not None:
                scores.append(-1000.0)
        tokens.append(text)
        types.append(typ)
        if scores is not None:
            scores.append(-1000.0)
    if any(t == "" for t in tokens):
        raise CheckpointError(f"{d}: the vocabulary has ids without a token")
    if len(tokens) > n_vocab:
        raise CheckpointError(f"{d}: the tokenizer has {len(tokens)} tokens but the embedding only {n_vocab} rows")
    while len(tokens) < n_vocab:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(UNUSED)
        if scores is not None:
            scores.append(-1000.0)

    v = Vocab(model=model, tokens=tokens, types=types, scores=scores, merges=merges, pre=pre, source=source)

    # special tokens: tokenizer_config.json / special_tokens_map.json strings, else the SentencePiece
    # trainer's ids, else config.json's ids
    stm = read_json(d / "special_tokens_map.json", required=False) or {}
    for attr, key, trainer_key, cfg_key in (
        ("bos", "bos_token", "bos_id", "bos_token_id"),
        ("eos", "eos_token", "eos_id", "eos_token_id"),
        ("unk", "unk_token", "unk_id", None),
        ("pad", "pad_token", "pad_id", "pad_token_id"),
    ):
        tid = None
        text = _token_text(tc.get(key)) or _token_text(stm.get(key))
        if text is not None:
            tid = v.id_of(text)
            if tid is None and attr in ("bos", "eos"):  # without it generation would never stop / start right
                raise CheckpointError(f"{d}: {key} {text!r} of tokenizer_config.json is not in the vocabulary")
        elif key in tc and tc[key] is None:  # explicitly none
            tid = None
        elif isinstance(trainer.get(trainer_key), int) and 0 <= trainer[trainer_key] < len(tokens):
            tid = trainer[trainer_key]
        elif cfg_key and config_text is not None and isinstance(config_text.get(cfg_key), int):
            tid = config_text.get(cfg_key)
        if tid is not None and 0 <= tid < len(tokens):
            setattr(v, attr, tid)

    # BOS/EOS insertion: tokenizer_config.json, else tokenizer.json's post-processor, else the defaults
    # of LlamaTokenizer (BOS) and of byte-level BPE tokenizers (none)
    first, last = _template_specials(tj)
    if isinstance(tc.get("add_bos_token"), bool):
        v.add_bos = tc["add_bos_token"]
    elif tj is not None and tj.get("post_processor") is not None:
        v.add_bos = v.bos is not None and first is not None and first == v.tokens[v.bos]
    else:
        v.add_bos = model == "llama"
    if isinstance(tc.get("add_eos_token"), bool):
        v.add_eos = tc["add_eos_token"]
    elif tj is not None and tj.get("post_processor") is not None:
        v.add_eos = v.eos is not None and last is not None and last == v.tokens[v.eos] and last != first
    else:
        v.add_eos = False

    if model == "llama":
        scheme = _prepend_scheme(tj, tc, normalizer.get("add_dummy_prefix"))
        v.prepend_scheme = scheme
        v.add_space_prefix = scheme != "never"
        if normalizer.get("remove_extra_whitespaces"):
            log.warning("%s: the SentencePiece normalizer removes extra whitespace; GGUF tokenizers do not", source)
        if normalizer.get("name") not in (None, "identity"):
            log.warning(
                "%s: SentencePiece normalizer '%s' is not applied by GGUF tokenizers", source, normalizer.get("name")
            )
    v.chat_templates = chat_templates(d, tc)
    for name, tpl in v.chat_templates.items():
        try:
            template_variables(tpl)  # parses it: a template the engine's renderer refuses is not written
        except ValueError as e:
            raise CheckpointError(f"{d}: chat template{' ' + repr(name) if name else ''}: {e}") from None
    return v
