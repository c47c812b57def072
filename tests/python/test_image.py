"""Image preprocessing (engine/image/, pyakvq.image) against Pillow and Hugging Face.

Measured parity (all bit-exact, these tests assert it):
  - resize vs PIL's Image.resize (Pillow >= 13; every filter: nearest, lanczos, bilinear, bicubic,
    box, hamming; random sizes, up- and downscaling, both pass orders): max |delta| = 0 (uint8).
  - preprocess vs transformers' PIL-based processors (CLIPImageProcessorPil, crop mode;
    LlavaImageProcessorPil with do_pad=True, pad mode), 63 cases of tests/fixtures/image/
    (tiny 7x5, wide 300x40, tall 40x300, exact 336, upscaled 20x20 and 1x1, 500x375, portrait
    360x800, 337x335, extreme 3x900, RGBA, gray, gray + alpha, palette with transparency; bicubic
    336, bilinear/nearest/lanczos 64, a crop larger than the resized image, a non-square crop):
    uint8 pixels after resize + crop equal, max |delta| = 0; float32 pixel_values equal bit for bit
    (max |delta| = 0, SHA-256 of the whole tensor compared).
  - PNG through libpng vs Pillow: equal (RGB, RGBA, gray, gray + alpha, palette with and without
    transparency, 1-bit, 16-bit RGB). Exception: 16-bit gray, where the engine keeps the high byte
    and Pillow's convert("RGB") clips the 16-bit value to 255.
  - JPEG through the system libjpeg(-turbo) vs Pillow's bundled libjpeg-turbo: equal (baseline
    and progressive, 4:4:4 / 4:2:2 / 4:2:0, quality 50-100, gray, CMYK), max |delta| = 0.
"""

import hashlib
import io
import json
import pathlib

import numpy as np
import pytest

from pyakvq import image
from pyakvq._ext import _akvq

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "image" / "reference.npz"
FILTERS = [0, 1, 2, 3, 4, 5]  # PIL codes: nearest, lanczos, bilinear, bicubic, box, hamming
CODECS = _akvq.image_codecs()
needs_png = pytest.mark.skipif(not CODECS["png"], reason="this build has no libpng")
needs_jpeg = pytest.mark.skipif(not CODECS["jpeg"], reason="this build has no libjpeg")
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def noise(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---- resize vs Pillow ----


@pytest.mark.parametrize("resample", FILTERS)
def test_resize_matches_pillow(resample):
    rng = np.random.default_rng(100 + resample)
    sizes = [((w, h), (ow, oh)) for (w, h, ow, oh) in rng.integers(1, 90, (40, 4))]
    sizes += [
        ((300, 40), (2520, 336)),
        ((37, 200), (30, 40)),
        ((50, 80), (50, 20)),
        ((1, 1), (13, 7)),
        ((64, 9), (1, 1)),
    ]
    for i, ((w, h), (ow, oh)) in enumerate(sizes):
        a = noise(int(h), int(w), i)
        if i % 3 == 0:  # some smooth content too (ringing of lanczos/bicubic hits the clamps)
            a[: h // 2] = np.linspace(0, 255, int(w), dtype=np.uint8)[None, :, None]
        want = np.asarray(Image.fromarray(a).resize((int(ow), int(oh)), resample))
        got = _akvq.resize_image(a, int(ow), int(oh), resample)
        if not PILLOW_13 and int(h) - int(oh) > 0 and int(h) - int(oh) > 2 * (int(w) - int(ow)):
            continue  # Pillow <= 12 ran the horizontal pass first here (rounds differently)
        assert got.shape == want.shape
        assert np.array_equal(got, want), (w, h, ow, oh, resample, int(np.abs(got.astype(int) - want).max()))


# ---- preprocess vs Hugging Face (fixture) ----


def _fixture():
    z = np.load(FIXTURE)
    return z, json.loads(z["manifest"].tobytes())


_Z, _MANIFEST = _fixture()


def _lut():
    mean = np.array(_MANIFEST["mean"], np.float32)
    std = np.array(_MANIFEST["std"], np.float32)
    x = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)  # transformers' rescale
    return (x[None, :] - mean[:, None]) / std[:, None]  # its normalize, float32: [3, 256]


def _pixels_to_u8(out):
    """Inverts the (strictly increasing) normalization; asserts every value is exactly one of the
    256 normalized levels of its channel."""
    lut = _lut()
    u8 = np.stack([np.searchsorted(lut[c], out[c]) for c in range(3)]).clip(0, 255).astype(np.uint8)
    for c in range(3):
        assert np.array_equal(lut[c][u8[c]], out[c]), "normalization differs from transformers'"
    return u8


def _cfg(case):
    cfg = _MANIFEST["configs"][case["config"]]
    return dict(
        image_size=cfg["size"],
        crop_size=tuple(cfg["crop"]),
        mean=_MANIFEST["mean"],
        std=_MANIFEST["std"],
        resample=cfg["resample"],
        mode=cfg["mode"],
    )


@pytest.mark.parametrize("case", _MANIFEST["cases"], ids=[c["key"] for c in _MANIFEST["cases"]])
def test_preprocess_matches_hf(case):
    im = Image.open(io.BytesIO(_Z["png_" + case["input"]].tobytes()))
    out = image.preprocess(im, **_cfg(case))
    crop = _MANIFEST["configs"][case["config"]]["crop"]
    assert out.dtype == np.float32 and out.shape == (3, *crop) and out.flags.c_contiguous
    u8 = _pixels_to_u8(out)
    if case["stored"] == "full":
        ref, mine = _Z["u8_" + case["key"]], u8
    else:
        ref, mine = _Z["sub_" + case["key"]], u8[:, ::6, ::6]
    assert np.array_equal(mine, ref), f"max |delta| {int(np.abs(mine.astype(int) - ref).max())}"
    assert hashlib.sha256(u8.tobytes()).hexdigest() == case["u8_sha256"]
    assert hashlib.sha256(out.tobytes()).hexdigest() == case["f32_sha256"]  # float32 bit for bit


@pytest.mark.parametrize("name", sorted(_MANIFEST["inputs"]))
def test_inputs_every_way_agree(name):
    """A path, bytes, a PIL image, the decoded array and the engine's own PNG decoder give the same
    RGB pixels (mode conversions: RGBA, LA and transparency keys composited onto white)."""
    data = _Z["png_" + name].tobytes()
    from_pil = image.to_rgb_array(Image.open(io.BytesIO(data)))
    assert from_pil.dtype == np.uint8 and from_pil.shape[2] == 3
    assert np.array_equal(image.to_rgb_array(data), from_pil)
    assert np.array_equal(image.to_rgb_array(bytearray(data)), from_pil)
    if CODECS["png"]:
        assert np.array_equal(_akvq.decode_image(data), from_pil)
    # drop mode is PIL's convert("RGB")
    pil_drop = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(image.to_rgb_array(data, alpha="drop"), pil_drop)
    if CODECS["png"]:
        assert np.array_equal(_akvq.decode_image(data, "drop"), pil_drop)


def test_path_and_array_inputs(tmp_path):
    data = _Z["png_rgba_33x21"].tobytes()
    p = tmp_path / "x.png"
    p.write_bytes(data)
    rgb = image.to_rgb_array(p)
    assert np.array_equal(image.to_rgb_array(str(p)), rgb)
    rgba = np.asarray(Image.open(p))
    assert rgba.shape[2] == 4
    assert np.array_equal(image.to_rgb_array(rgba), rgb)  # [H, W, 4] arrays: composited as PIL images are
    gray = np.asarray(Image.open(io.BytesIO(_Z["png_gray_64x48"].tobytes())))
    assert np.array_equal(image.to_rgb_array(gray), np.repeat(gray[..., None], 3, axis=2))
    view = noise(10, 12, 1)[:, ::2]  # non-contiguous
    assert np.array_equal(image.to_rgb_array(view), view)
    a = image.preprocess(rgb, image_size=24)
    b = image.preprocess(p, image_size=24)
    assert a.shape == (3, 24, 24) and np.array_equal(a, b)


# ---- decoding: libpng / libjpeg vs Pillow ----


def _png_modes():
    rgb = noise(19, 23, 7)
    rgba = np.dstack([rgb, noise(19, 23, 8)[..., 0]])
    pal = Image.fromarray(rgb).quantize(colors=30)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 5
    ims = {
        "RGB": Image.fromarray(rgb),
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "L": Image.fromarray(rgb[..., 0]),
        "LA": Image.fromarray(rgba[..., ::3].copy(), "LA"),
        "P": pal,
        "P+transparency": pal_t,
        "1": Image.fromarray(rgb[..., 0] > 128),
        "L+transparency": Image.fromarray(rgb[..., 1]),
    }
    ims["L+transparency"].info["transparency"] = int(rgb[3, 4, 1])
    ims["RGB+transparency"] = Image.fromarray(rgb)
    ims["RGB+transparency"].info["transparency"] = tuple(int(v) for v in rgb[3, 4])
    return ims


def _png_rgb16(w: int, h: int, rgb16: np.ndarray, key: tuple[int, int, int]) -> bytes:
    """A 16-bit RGB PNG with a tRNS key (Pillow writes none): signature, IHDR, tRNS, IDAT, IEND."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">HHH", *key))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@needs_png
def test_rgb_transparency_key_is_ignored_as_transformers_does(tmp_path):
    """An RGB PNG with a transparency key (8- and 16-bit): Pillow opens it in mode "RGB", which
    transformers' convert_to_rgb returns as it is, key ignored; both decoders give those pixels
    (they once painted the keyed pixels white; the 16-bit one only through libpng)."""
    rgb = noise(7, 9, 3)
    key = tuple(int(v) for v in rgb[2, 3])
    p8 = tmp_path / "rgb8.png"
    Image.fromarray(rgb).save(p8, transparency=key)
    rgb16 = (rgb.astype(np.uint16) << 8) | 0x55
    p16 = tmp_path / "rgb16.png"
    p16.write_bytes(_png_rgb16(9, 7, rgb16, tuple(int(v) for v in rgb16[2, 3])))
    for p in (p8, p16):
        pil = Image.open(p)
        assert pil.mode == "RGB" and pil.info.get("transparency") is not None
        want = np.asarray(pil)  # what convert_to_rgb hands the processor
        assert np.array_equal(image.to_rgb_array(p), want), p
        assert np.array_equal(image.load_image(p), want), p


@needs_png
@pytest.mark.parametrize("mode", list(_png_modes()))
@pytest.mark.parametrize("alpha", ["white", "drop"])
def test_png_decode_matches_pillow(tmp_path, mode, alpha):
    im = _png_modes()[mode]
    p = tmp_path / "x.png"
    im.save(p, transparency=im.info["transparency"]) if "transparency" in im.info else im.save(p)
    assert np.array_equal(image.load_image(p, alpha=alpha), image.to_rgb_array(p, alpha=alpha))


@needs_png
def test_png_16bit_gray_keeps_the_high_byte(tmp_path):
    g16 = (noise(5, 6, 9)[..., 0].astype(np.uint16) << 8) | 0x7F
    p = tmp_path / "gray16.png"
    Image.fromarray(g16).save(p)  # Pillow writes I;16 as a 16-bit gray PNG
    got = image.load_image(p)
    assert np.array_equal(got, np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, axis=2))
    # Pillow's convert("RGB") of I;16 clips the value to 255 instead (so does transformers); the
    # Pillow path (paths, bytes, PIL images) reads the high byte as the engine does, every value.
    every = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    q = tmp_path / "every16.png"
    Image.fromarray(every).save(q)
    assert Image.open(q).mode.startswith("I")
    want = np.repeat((every >> 8).astype(np.uint8)[..., None], 3, axis=2)
    assert np.array_equal(image.load_image(q), want)
    assert np.array_equal(image.to_rgb_array(q), want)
    assert np.array_equal(image.to_rgb_array(Image.open(q)), want)
    # with a transparency key (white where it matches, or ignored), as libpng's tRNS
    Image.fromarray(g16).save(q, transparency=int(g16[1, 1]))
    for alpha in ("white", "drop"):
        assert np.array_equal(image.to_rgb_array(q, alpha=alpha), image.load_image(q, alpha=alpha)), alpha
    assert (image.to_rgb_array(q)[1, 1] == 255).all()
    # 32-bit integer images (mode I) keep Pillow's reading (values 0..255 as they are)
    ints = Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 3)
    assert np.array_equal(image.to_rgb_array(ints)[..., 0], np.asarray(ints.convert("L")))
    # (a 16-bit RGB PNG, which Pillow reads as the high bytes too, is in the C++ tests)


@needs_jpeg
@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_decode_matches_pillow(tmp_path, subsampling, progressive):
    rgb = noise(37, 61, 3)
    rgb[:20] = np.linspace(0, 255, 61, dtype=np.uint8)[None, :, None]
    for q in (50, 95):
        p = tmp_path / f"x{q}.jpg"
        Image.fromarray(rgb).save(p, quality=q, subsampling=subsampling, progressive=progressive)
        assert np.array_equal(image.load_image(p), image.to_rgb_array(p))  # max |delta| 0


@needs_jpeg
def test_jpeg_gray_and_cmyk_match_pillow(tmp_path):
    rgb = noise(16, 24, 4)
    for mode in ("L", "CMYK"):
        p = tmp_path / f"x_{mode}.jpg"
        Image.fromarray(rgb).convert(mode).save(p, quality=90)
        assert np.array_equal(image.load_image(p), image.to_rgb_array(p)), mode


# ---- errors ----


def test_to_rgb_array_errors(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        image.to_rgb_array(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        image.to_rgb_array(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        image.to_rgb_array(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="zero-size"):
        image.to_rgb_array(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="path .* bytes, a PIL image"):
        image.to_rgb_array([[1, 2, 3]])
    with pytest.raises(ValueError, match="empty"):
        image.to_rgb_array(b"")
    with pytest.raises(ValueError, match="not an image"):
        image.to_rgb_array(b"hello, not an image")
    good = _Z["png_photo_500x375"].tobytes()
    with pytest.raises(ValueError, match="corrupt or truncated"):
        image.to_rgb_array(good[: len(good) // 2])
    jpg = io.BytesIO()
    Image.fromarray(noise(40, 40, 1)).save(jpg, "JPEG")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        image.to_rgb_array(jpg.getvalue()[:300])
    with pytest.raises(FileNotFoundError):
        image.to_rgb_array(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        image.to_rgb_array(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        image.to_rgb_array(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="zero-size"):
        image.to_rgb_array(Image.new("RGB", (0, 5)))
    with pytest.raises(ValueError, match="alpha"):
        image.to_rgb_array(noise(2, 2, 0), alpha="black")


def test_preprocess_errors():
    rgb = noise(8, 8, 0)
    with pytest.raises(ValueError, match="image_size"):
        image.preprocess(rgb, image_size=0)
    with pytest.raises(ValueError, match="crop_height"):
        image.preprocess(rgb, crop_size=(0, 5))
    with pytest.raises(ValueError, match=r"std\[2\]"):
        image.preprocess(rgb, std=(0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="'crop' or 'pad'"):
        image.preprocess(rgb, mode="stretch")
    with pytest.raises(ValueError, match="not a PIL filter code"):
        image.preprocess(rgb, resample=9)
    with pytest.raises(ValueError, match="3 values"):
        image.preprocess(rgb, mean=(0.5, 0.5))
    with pytest.raises(TypeError):  # the raw binding takes only C-contiguous uint8 [H, W, 3]
        _akvq.preprocess_image(rgb.astype(np.float32), 8, 8, [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match="3 channels"):
        _akvq.preprocess_image(np.zeros((4, 4, 4), np.uint8), 8, 8, [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match="zero-size"):
        _akvq.preprocess_image(np.zeros((0, 4, 3), np.uint8), 8, 8, [0.5] * 3, [0.5] * 3)


def test_engine_decoder_errors(tmp_path):
    with pytest.raises(OSError, match="missing.png"):
        image.load_image(tmp_path / "missing.png")
    with pytest.raises(OSError, match="directory"):
        image.load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        image.load_image(tmp_path / "empty.png")
    (tmp_path / "a.gif").write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="GIF images are not supported"):
        image.load_image(tmp_path / "a.gif")
    (tmp_path / "a.png").write_bytes(b"this is text")
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        image.load_image(tmp_path / "a.png")
    good = _Z["png_photo_500x375"].tobytes()
    for n in (8, 20, 40, len(good) // 3, len(good) - 13):
        (tmp_path / "t.png").write_bytes(good[:n])
        if CODECS["png"]:
            with pytest.raises(ValueError, match="corrupt or truncated PNG"):
                image.load_image(tmp_path / "t.png")
        else:
            with pytest.raises(RuntimeError, match="cannot read PNG"):
                image.load_image(tmp_path / "t.png")
    jpg = io.BytesIO()
    Image.fromarray(noise(40, 40, 1)).save(jpg, "JPEG")
    for n in (3, 100, 300, len(jpg.getvalue()) - 30):
        (tmp_path / "t.jpg").write_bytes(jpg.getvalue()[:n])
        if CODECS["jpeg"]:
            with pytest.raises(ValueError, match="corrupt or truncated JPEG"):
                image.load_image(tmp_path / "t.jpg")
    with pytest.raises(ValueError, match="alpha"):
        _akvq.decode_image(good, "black")


@pytest.mark.skipif(not pathlib.Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused_after_its_first_bytes(tmp_path):
    """/dev/zero given as an image (as any large file of something else): both decoders refuse it
    from its first bytes, in a process held to 4 GiB of address space. They used to read it whole
    first, growing without bound."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from pyakvq import image\n"
        "for fn in (image.load_image, image.to_rgb_array):\n"
        "    try:\n"
        "        fn('/dev/zero')\n"
        "        print('no error')\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    cwd = pathlib.Path(image.__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd, env=os.environ
    )
    assert r.returncode == 0, r.stderr
    engine, pillow = r.stdout.strip().splitlines()
    assert engine.startswith("ValueError") and "not a PNG or JPEG" in engine, engine
    assert pillow.startswith("ValueError") and "not an image pillow can read" in pillow, pillow


@pytest.mark.skipif(not CODECS["png"], reason="the engine was built without libpng")
def test_a_png_header_declaring_a_huge_image_is_refused_before_any_row_is_allocated(tmp_path):
    """65-byte PNGs whose IHDR declares 2^31 - 1 columns (RGB 8-bit, RGBA 16-bit): refused from the
    header, in a process held to 1 GiB of address space. libpng's row buffers for the declared width
    were allocated and cleared first (6 GB and 17 GB, 30 s and 105 s), then the size was refused."""
    import os
    import struct
    import subprocess
    import sys
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    for color, depth in ((2, 8), (6, 16)):
        ihdr = struct.pack(">IIBBBBB", 2**31 - 1, 1, depth, color, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
        (tmp_path / f"wide{depth}.png").write_bytes(data)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from pyakvq import image\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        image.load_image(p)\n"
        "        print('no error')\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    cwd = pathlib.Path(image.__file__).resolve().parents[1]
    paths = [str(tmp_path / "wide8.png"), str(tmp_path / "wide16.png")]
    r = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=60, cwd=cwd, env=os.environ
    )
    assert r.returncode == 0, r.stderr
    for line in r.stdout.strip().splitlines():
        assert line.startswith("ValueError") and "2147483647x1 pixels is larger than the limit" in line, line


def test_lazy_pil_image_and_sizes_out_of_range(tmp_path):
    """A PIL image opened lazily from a truncated file is a ValueError as the same file given by
    path (not pillow's OSError); image_size and crop_size out of range name themselves."""
    good = _Z["png_photo_500x375"].tobytes()
    (tmp_path / "t.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        image.to_rgb_array(Image.open(tmp_path / "t.png"))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        image.to_rgb_array(tmp_path / "t.png")
    img = noise(8, 8, 3)
    for kw, name in (({"image_size": 2**31}, "image_size"), ({"image_size": 0}, "image_size"),
                     ({"crop_size": -1}, "crop_size"), ({"crop_size": (4, 2**40)}, "crop_width")):
        with pytest.raises(ValueError, match=f"^{name} must be in"):
            image.preprocess(img, **kw)


def test_codecs_reported():
    assert set(image.codecs()) == {"png", "jpeg"}
