"""Rendering of one synthetic image: the textured background, the unannotated distractor clutter,
the shapes, and the boxes (and masks) of the objects that stay visible enough to be annotated.

Decisions
---------
* **Boxes** are the exact extent of the object's own rendered binary mask (PIL ``ImageDraw`` on an
  ``L`` canvas of the image size), so they are tight around the drawn shape and clipped to the image
  (truncation). They are *amodal with respect to occlusion*: the box covers the whole shape even
  where later objects paint over it; objects that are less than ``min_visible_fraction`` (20%)
  visible or have fewer than ``min_visible_pixels`` visible pixels are drawn but not annotated.
  COCO ``bbox`` is ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` in integer pixel units, with
  ``(x1, y1)`` / ``(x2, y2)`` the first / last covered pixel, i.e. the box covers the pixels.
* **area** is the *box* area ``w * h`` (not the mask pixel count). COCOeval selects ground truth
  by ``area`` for the small/medium/large breakdown and computes the area of detections (boxes) as
  ``w * h``; using the box area for ground truth too keeps both sides on the same scale, and makes
  a thin ring or bar of a given extent count as the size of its box, not of its few pixels.
* **Determinism**: every image is generated from its own ``np.random.default_rng([seed, split,
  index])`` stream, so it does not depend on the generation order or on the number of images of the
  other split; train and val use different streams. The same parameters give identical pixels
  (and, see :mod:`.layout`, byte-identical annotation files).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .params import _SPLIT_CODES, _SPLITS, SyntheticParams, _as_params


def _image_rng(params: SyntheticParams, split: str, index: int) -> np.random.Generator:
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return np.random.default_rng([params.seed, _SPLIT_CODES[split], int(index)])


def _smooth_noise(rng, height, width, cells, amplitude):
    """Smooth (bilinear, smoothstep-weighted) upsampling of a random grid: (H, W, 3) float32."""
    gh = max(2, int(round(cells * height / max(height, width)))) + 1
    gw = max(2, int(round(cells * width / max(height, width)))) + 1
    grid = rng.normal(0.0, amplitude, size=(gh, gw, 3)).astype(np.float32)

    def interp_matrix(n, g):
        pos = (np.arange(n, dtype=np.float64) + 0.5) * (g - 1) / n
        i0 = np.minimum(np.floor(pos).astype(np.int64), g - 2)
        t = pos - i0
        t = t * t * (3 - 2 * t)  # smoothstep: no visible grid creases
        m = np.zeros((n, g), dtype=np.float32)
        m[np.arange(n), i0] = 1 - t
        m[np.arange(n), i0 + 1] = t
        return m

    my, mx = interp_matrix(height, gh), interp_matrix(width, gw)
    tmp = (my @ grid.reshape(gh, gw * 3)).reshape(height, gw, 3)  # (H, gw, 3)
    return (tmp.transpose(0, 2, 1) @ mx.T).transpose(0, 2, 1)  # (H, W, 3)


def _background(rng, height, width) -> np.ndarray:
    """Textured background, float32 (H, W, 3), roughly in [0, 255]. Fully vectorized."""
    base = rng.uniform(50, 205, size=3).astype(np.float32)
    # Smooth linear gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    delta = rng.uniform(-70, 70, size=3).astype(np.float32)
    ys = (np.arange(height, dtype=np.float32) / height - 0.5) * np.float32(np.sin(angle))
    xs = (np.arange(width, dtype=np.float32) / width - 0.5) * np.float32(np.cos(angle))
    img = base + (ys[:, None, None] + xs[None, :, None]) * delta
    # Low-frequency blobs (coarse grid) and a mid-frequency texture.
    img += _smooth_noise(rng, height, width, rng.integers(2, 5), rng.uniform(15, 35))
    img += _smooth_noise(rng, height, width, rng.integers(12, 40), rng.uniform(4, 14))
    # A few soft Gaussian blobs: sum_k gy_k(y) gx_k(x) color_k as one matrix product.
    k = int(rng.integers(1, 5))
    cy = rng.uniform(0, height, size=k)
    cx = rng.uniform(0, width, size=k)
    sigma = rng.uniform(0.04, 0.2, size=k) * max(height, width)
    color = rng.uniform(-60, 60, size=(k, 3))
    gy = np.exp(-0.5 * ((np.arange(height)[:, None] - cy) / sigma) ** 2).astype(np.float32)
    gx = np.exp(-0.5 * ((np.arange(width)[:, None] - cx) / sigma) ** 2)  # (W, k)
    gxc = (gx[:, :, None] * color[None]).transpose(1, 0, 2).reshape(k, width * 3)
    img += (gy @ gxc.astype(np.float32)).reshape(height, width, 3)
    return img


def _draw_distractors(rng, image: Image.Image, params: SyntheticParams) -> None:
    """Unannotated clutter: dots, short lines and scribbles, drawn in place on an RGB image."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    n = int(rng.integers(params.min_distractors, params.max_distractors + 1))
    for _ in range(n):
        kind = int(rng.integers(0, 3))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if kind == 0:  # dot
            r = rng.uniform(0.8, 3.0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        elif kind == 1:  # short straight line
            length, angle = rng.uniform(4, 25), rng.uniform(0, 2 * np.pi)
            x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
            draw.line([(x, y), (x2, y2)], fill=color, width=1)
        else:  # scribble: a short random walk
            steps = int(rng.integers(3, 7))
            pts = np.cumsum(rng.normal(0, 5.0, size=(steps, 2)), axis=0) + (x, y)
            draw.line([tuple(p) for p in pts.tolist()], fill=color, width=int(rng.integers(1, 3)))


def _sample_shape(rng, cls: str, cx: float, cy: float, w: float, h: float):
    """Draw commands for one shape: a list of (method, args, kwargs) and its geometric bounds."""
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    short = min(w, h)
    cmds: List[Tuple[str, Any, Dict[str, Any]]] = []
    pad = 1.0
    if cls == "rectangle":
        r = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
        cmds.append(("rectangle", r, {}))
    elif cls == "ellipse":
        cmds.append(("ellipse", [x0, y0, x1, y1], {}))
    elif cls == "triangle":
        u = rng.uniform(0, 1)
        orient = int(rng.integers(0, 4))
        if orient == 0:  # apex on top
            pts = [(x0 + u * w, y0), (x1, y1), (x0, y1)]
        elif orient == 1:  # apex at the bottom
            pts = [(x0 + u * w, y1), (x1, y0), (x0, y0)]
        elif orient == 2:  # apex on the left
            pts = [(x0, y0 + u * h), (x1, y0), (x1, y1)]
        else:  # apex on the right
            pts = [(x1, y0 + u * h), (x0, y0), (x0, y1)]
        cmds.append(("polygon", pts, {}))
    elif cls == "ring":
        t = max(2, int(round(short * rng.uniform(0.1, 0.22))))
        cmds.append(("ellipse", [x0, y0, x1, y1], {"width": t, "outline_only": True}))
    elif cls == "hollow_square":
        t = max(2, int(round(short * rng.uniform(0.1, 0.22))))
        r = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
        cmds.append(("rectangle", r, {"width": t, "outline_only": True}))
    elif cls == "cross":
        t = max(2.0, short * rng.uniform(0.25, 0.4))
        cmds.append(
            ("rectangle", [round(x0), round(cy - t / 2), round(x1) - 1, round(cy + t / 2) - 1], {})
        )
        cmds.append(
            ("rectangle", [round(cx - t / 2), round(y0), round(cx + t / 2) - 1, round(y1) - 1], {})
        )
    elif cls == "bar":
        diag = math.hypot(w, h)
        t = max(3.0, diag * rng.uniform(0.06, 0.12))
        if rng.uniform() < 0.5:
            p0, p1 = np.array([x0, y0]), np.array([x1, y1])
        else:
            p0, p1 = np.array([x0, y1]), np.array([x1, y0])
        d = (p1 - p0) / max(diag, 1e-6)
        n = np.array([-d[1], d[0]]) * (t / 2)
        pts = [tuple(p0 + n), tuple(p1 + n), tuple(p1 - n), tuple(p0 - n)]
        cmds.append(("polygon", [(float(a), float(b)) for a, b in pts], {}))
        pad = t / 2 + 1
    else:  # pragma: no cover - guarded by SyntheticParams validation
        raise ValueError(f"unknown class {cls!r}")
    bounds = (x0 - pad - 2, y0 - pad - 2, x1 + pad + 2, y1 + pad + 2)
    return cmds, bounds


def _render(draw: ImageDraw.ImageDraw, cmds, fill: int) -> None:
    for method, args, kwargs in cmds:
        kwargs = dict(kwargs)
        outline_only = kwargs.pop("outline_only", False)
        if outline_only:
            getattr(draw, method)(args, outline=fill, **kwargs)
        else:
            getattr(draw, method)(args, fill=fill, **kwargs)


# Test hook: when True, check after every object that the object's pixels all lie in its region.
_CHECK_REGIONS = False


def _generate(params: SyntheticParams, split: str, index: int, want_masks: bool):
    rng = _image_rng(params, split, index)
    width = int(rng.integers(params.min_image_size, params.max_image_size + 1))
    height = int(rng.integers(params.min_image_size, params.max_image_size + 1))

    # Background + clutter.
    bg = np.clip(_background(rng, height, width), 0, 255).astype(np.uint8)
    bg_img = Image.fromarray(bg, mode="RGB")
    _draw_distractors(rng, bg_img, params)
    img = np.asarray(bg_img, dtype=np.float32).copy()

    # Objects.
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    owner = np.zeros((height, width), dtype=np.int32)  # 1 + index of the topmost object, 0 = bg
    side = min(width, height)
    size_hi = params.max_object_frac * side
    if params.max_object_size is not None:
        size_hi = min(size_hi, params.max_object_size)
    size_lo = min(params.min_object_size, size_hi)
    log_size = (math.log(size_lo), math.log(max(size_hi, size_lo)))
    log_aspect = (math.log(params.min_aspect), math.log(params.max_aspect))
    num_classes = len(params.classes)

    objects: List[Dict[str, Any]] = []  # in drawing order

    def add_object():
        cls_idx = int(rng.integers(0, num_classes))
        size = math.exp(rng.uniform(*log_size))
        aspect = math.exp(rng.uniform(*log_aspect))
        w = max(3.0, size * math.sqrt(aspect))
        h = max(3.0, size / math.sqrt(aspect))
        if objects and rng.uniform() < params.crowdedness:
            other = objects[int(rng.integers(0, len(objects)))]
            spread = 0.35 * (other["scale"] + size)
            cx = float(np.clip(other["center"][0] + rng.normal(0, spread), 0, width - 1))
            cy = float(np.clip(other["center"][1] + rng.normal(0, spread), 0, height - 1))
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        cmds, (bx0, by0, bx1, by1) = _sample_shape(rng, params.classes[cls_idx], cx, cy, w, h)
        # Region of the canvas that can contain the shape's pixels.
        l, t = max(0, math.floor(bx0)), max(0, math.floor(by0))
        r, b = min(width, math.ceil(bx1) + 1), min(height, math.ceil(by1) + 1)
        color_cands = rng.uniform(0, 255, size=(8, 3))
        shade = rng.uniform(-25, 25, size=2)
        truncated = int(
            cx - w / 2 < 0 or cy - h / 2 < 0 or cx + w / 2 > width or cy + h / 2 > height
        )
        if r <= l or b <= t:
            return
        _render(draw, cmds, 255)
        mask = np.asarray(canvas.crop((l, t, r, b))) > 0
        draw.rectangle([l, t, r - 1, b - 1], fill=0)
        if _CHECK_REGIONS:
            assert not np.asarray(canvas).any(), "shape pixels outside of its region"
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return
        # Colour: first candidate that contrasts enough with what lies under the object.
        under = img[t:b, l:r][mask].mean(axis=0)
        dist = np.linalg.norm(color_cands - under, axis=1)
        ok = np.flatnonzero(dist >= params.min_contrast)
        color = color_cands[ok[0] if len(ok) else int(np.argmax(dist))].astype(np.float32)
        # Mild linear shading across the object.
        gy = (np.arange(t, b, dtype=np.float32) - cy) / max(h, 1.0) * np.float32(shade[0])
        gx = (np.arange(l, r, dtype=np.float32) - cx) / max(w, 1.0) * np.float32(shade[1])
        fill = color + (gy[:, None] + gx[None, :])[:, :, None]
        img[t:b, l:r][mask] = fill[mask]
        owner[t:b, l:r][mask] = len(objects) + 1
        objects.append(
            dict(
                class_index=cls_idx,
                center=(cx, cy),
                scale=size,
                # Tight box of the own mask: first / last covered pixel (inclusive).
                x1=l + int(cols[0]),
                y1=t + int(rows[0]),
                x2=l + int(cols[-1]),
                y2=t + int(rows[-1]),
                pixels=int(mask.sum()),
                truncated=truncated,
                region=(l, t, r, b),
                mask=mask if want_masks else None,
            )
        )

    def kept_indices():
        visible = np.bincount(owner.ravel(), minlength=len(objects) + 1)[1:]
        return [
            i
            for i, o in enumerate(objects)
            if visible[i] >= params.min_visible_pixels
            and visible[i] >= params.min_visible_fraction * o["pixels"]
        ]

    num_objects = int(rng.integers(params.min_objects, params.max_objects + 1))
    for _ in range(num_objects):
        add_object()
    kept = kept_indices()
    # Best effort to honour min_objects: each new object is fully visible when drawn, so it can
    # only add itself to the annotated set (and at most remove others), never overshoot.
    extra_budget = 4 * params.min_objects + 20
    while len(kept) < params.min_objects and extra_budget > 0:
        add_object()
        kept = kept_indices()
        extra_budget -= 1

    # Per-pixel Gaussian noise over everything.
    sigma = rng.uniform(params.noise_std / 3, params.noise_std) if params.noise_std > 0 else 0.0
    if sigma > 0:
        img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(sigma)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    annotations = []
    masks = []
    for i in kept:
        o = objects[i]
        w, h = o["x2"] - o["x1"] + 1, o["y2"] - o["y1"] + 1
        annotations.append(
            {
                "category_id": o["class_index"] + 1,
                "bbox": [o["x1"], o["y1"], w, h],
                "area": w * h,
                "iscrowd": 0,
                "truncated": o["truncated"],
            }
        )
        if want_masks:
            full = np.zeros((height, width), dtype=bool)
            l, t, r, b = o["region"]
            full[t:b, l:r] = o["mask"]
            masks.append(full)
    return image, annotations, masks


def generate_synthetic_image(
    split: str, index: int, params: Optional[SyntheticParams] = None, **generator_params
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Generate one image of a split (deterministic in ``(params, split, index)``).

    Returns:
        image: uint8 array (H, W, 3), RGB.
        annotations: list of dicts with ``category_id`` (1-based), ``bbox`` (COCO XYWH, ints, see
            the module docstring), ``area`` (box area), ``iscrowd`` (0) and ``truncated`` (0/1),
            in drawing order (later annotations are drawn over earlier ones).
    """
    params = _as_params(params, generator_params)
    image, annotations, _ = _generate(params, split, index, want_masks=False)
    return image, annotations


def get_synthetic_object_masks(
    split: str, index: int, params: Optional[SyntheticParams] = None, **generator_params
) -> List[np.ndarray]:
    """The own binary masks (bool (H, W), before occlusion, clipped to the image) of the annotated
    objects of one image, in the order of the annotations of :func:`generate_synthetic_image`.
    Each annotation's box is exactly the extent of its mask."""
    params = _as_params(params, generator_params)
    return _generate(params, split, index, want_masks=True)[2]
