"""Regenerates the example images of this directory with the demo model's scene generator
(models/demo/shapes.py), deterministically:

    python examples/make_examples.py            # writes examples/*.png, prints each image's labels

Each example fixes the labels (colour, shape, position) and searches seeds from its fixed start for
the first scene whose size suits it (sides of at least 160 pixels; the wide one at least 1.7:1), so
the files are the same on every run with the same Pillow. Only Pillow and the standard library.
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys

HERE = pathlib.Path(__file__).resolve().parent
SHAPES_PY = HERE.parent / "models" / "demo" / "shapes.py"

# file name -> (colour, shape, position, wide, the first seed tried)
EXAMPLES = {
    "red_circle.png": ("red", "circle", "center", False, 2026),
    "blue_square.png": ("blue", "square", "left", False, 3026),
    "green_triangle.png": ("green", "triangle", "top", False, 4026),
    "purple_circle_wide.png": ("purple", "circle", "right", True, 5026),
}
MAX_BYTES = 10_000  # each file stays small (it is committed)


def load_shapes():
    """models/demo/shapes.py as a module (the repository has no package there)."""
    spec = importlib.util.spec_from_file_location("demo_shapes", SHAPES_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


def make(shapes, color: str, shape: str, position: str, wide: bool, seed0: int):
    """The first scene from seeds seed0, seed0 + 1, ... whose size suits the example -> (image, scene)."""
    for seed in range(seed0, seed0 + 10_000):
        im, scene = shapes.draw_scene(random.Random(seed), color=color, shape=shape, position=position)
        w, h = scene.size
        if min(w, h) >= 160 and (w >= 1.7 * h if wide else max(w, h) <= 1.25 * min(w, h)):
            return im, scene
    raise RuntimeError(f"no seed gives a suitable {color} {shape}")


def main() -> int:
    shapes = load_shapes()
    for name, labels in EXAMPLES.items():
        im, scene = make(shapes, *labels)
        out = HERE / name
        im.save(out, optimize=True)
        size = out.stat().st_size
        if size > MAX_BYTES:
            raise RuntimeError(f"{out}: {size} bytes, more than {MAX_BYTES}")
        w, h = scene.size
        print(f"{name}: {w}x{h}, {size} bytes: {shapes.describe_answer(scene)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
