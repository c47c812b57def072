"""The LLaVA fixture checkpoints (tests/fixtures/llava, made by tests/fixtures/make_llava_fixtures.py)
converted with the real converter, for any test that needs their GGUF files, plus a writer of
llama.cpp's legacy two-file layout. Uses only numpy, gguf and pyakvq.convert (no torch).

    import llava_convert as lc
    paths = lc.convert_fixture("spm_default_pad", tmp_dir, outtype="f16")            # [one.gguf]
    text, mmproj = lc.convert_fixture("spm_default_pad", tmp_dir, mmproj=True)
    text, mmproj = lc.write_legacy_pair("spm_default_pad", tmp_dir)
    ref, meta = lc.reference("spm_default_pad")     # the .npz arrays and the .json description

As a script (with pyakvq importable: installed, or PYTHONPATH=. AKVQ_EXT_DIR=<build dir>):
    python tests/python/llava_convert.py legacy HF_DIR TEXT.gguf MMPROJ.gguf
"""

from __future__ import annotations

import json
import pathlib
import sys
from types import SimpleNamespace

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "llava"
CHECKPOINTS = ("spm_default_pad", "bpe_full_crop", "spm_pos_crop")


def reference(name: str) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(FIXTURES / f"{name}.npz") as z:
        ref = {k: z[k] for k in z.files}
    meta = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return ref, meta


def collapse_image_tokens(ids, image_id: int) -> list[int]:
    """Prompt ids with each run of image tokens (one per image embedding row) folded into one id."""
    out: list[int] = []
    for i in ids:
        i = int(i)
        if i == image_id and out and out[-1] == image_id:
            continue
        out.append(i)
    return out


def convert_fixture(name: str, out_dir, outtype: str = "f32", mmproj: bool = False, **kw) -> list[pathlib.Path]:
    """Converts tests/fixtures/llava/<name> into out_dir (one file, or text + mmproj)."""
    from pyakvq.convert import convert

    out_dir = pathlib.Path(out_dir)
    stem = f"{name}.{outtype}"
    if mmproj:
        return convert(
            FIXTURES / name,
            out_dir / f"{stem}.text.gguf",
            outtype=outtype,
            mmproj_out=out_dir / f"{stem}.mmproj.gguf",
            **kw,
        )
    return convert(FIXTURES / name, out_dir / f"{stem}.gguf", outtype=outtype, **kw)


# ---------------------------------------------------------------- llama.cpp's legacy two-file layout


def _copy_tensor(w, name: str, t) -> None:
    import gguf

    data = np.asarray(t.data)
    if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        w.add_tensor(name, data)
    else:  # raw blocks
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=t.tensor_type)


def _strip_copy(src: pathlib.Path, dst: pathlib.Path, arch: str, keep_key, tensors, extra=None) -> None:
    """Rewrites src into dst keeping the keys for which keep_key(key) is true, adding extra(writer)'s
    keys and writing `tensors` [(new name, tensor with .data and .tensor_type)]."""
    import gguf

    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), arch)
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or not keep_key(key):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(key, list(f.contents()))
        else:
            w.add_key_value(key, f.contents(), vtype)
    if extra is not None:
        extra(w)
    for name, t in tensors:
        _copy_tensor(w, name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_legacy_pair(hf_dir, out_dir, outtype: str = "f16") -> tuple[pathlib.Path, pathlib.Path]:
    """The two files as the widely published llama.cpp LLaVA-1.5 conversions have them, from a
    checkpoint whose vision_feature_layer is -2 (tests/fixtures/llava/spm_default_pad):
      text GGUF: arch llama, no akvq.* keys (llama.cpp's tokenizer rules apply);
      mmproj GGUF: arch clip, clip.vision.block_count = layers - 1 with the unused last block not stored,
        CLIP's fc1 stored as ffn_down and fc2 as ffn_up, no post_ln, no clip.vision.feature_layer and no
        akvq.* keys; the feature is then the output of the last stored block (= transformers'
        hidden_states[-2]). outtype f32 or f16 (the patch embedding is f16 either way, as published)."""
    import gguf

    hf_dir = pathlib.Path(hf_dir)
    if not hf_dir.is_dir():
        hf_dir = FIXTURES / str(hf_dir)
    out_dir = pathlib.Path(out_dir)
    cfg = json.loads((hf_dir / "config.json").read_text())
    if cfg.get("vision_feature_layer", -2) != -2:
        raise ValueError("the legacy layout stands for vision_feature_layer -2")
    if outtype not in ("f32", "f16"):
        raise ValueError("legacy files are f32 or f16")
    from pyakvq.convert import convert

    tmp_text, tmp_mm = out_dir / f"_{hf_dir.name}.text.gguf", out_dir / f"_{hf_dir.name}.mmproj.gguf"
    convert(hf_dir, tmp_text, outtype=outtype, mmproj_out=tmp_mm)
    text = out_dir / f"{hf_dir.name}.legacy.text.gguf"
    mmproj = out_dir / f"{hf_dir.name}.legacy.mmproj.gguf"

    r = gguf.GGUFReader(tmp_text)
    _strip_copy(tmp_text, text, "llama", lambda k: not k.startswith("akvq."), [(t.name, t) for t in r.tensors])

    r = gguf.GGUFReader(tmp_mm)
    n_layer = int(r.fields["clip.vision.block_count"].contents())
    kept = []
    for t in r.tensors:
        name = t.name
        if name.startswith(f"v.blk.{n_layer - 1}."):
            continue  # the unused last block
        if ".ffn_up." in name:
            name = name.replace(".ffn_up.", ".ffn_down.")
        elif ".ffn_down." in name:
            name = name.replace(".ffn_down.", ".ffn_up.")
        if name == "v.patch_embd.weight" and t.tensor_type == gguf.GGMLQuantizationType.F32:
            t = SimpleNamespace(data=np.asarray(t.data).astype(np.float16), tensor_type=gguf.GGMLQuantizationType.F16)
        kept.append((name, t))

    def keep(k: str) -> bool:
        return not k.startswith("akvq.") and k not in ("clip.vision.feature_layer", "clip.vision.block_count")

    # block_count as published: one less than the tower's layers
    _strip_copy(
        tmp_mm, mmproj, "clip", keep, kept, extra=lambda w: w.add_uint32("clip.vision.block_count", n_layer - 1)
    )
    tmp_text.unlink()
    tmp_mm.unlink()
    return text, mmproj


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "legacy":
        sys.exit("usage: python tests/python/llava_convert.py legacy HF_DIR TEXT.gguf MMPROJ.gguf")
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        t, m = write_legacy_pair(sys.argv[2], d)
        shutil.move(t, sys.argv[3])
        shutil.move(m, sys.argv[4])
    print(f"wrote {sys.argv[3]} and {sys.argv[4]}")
