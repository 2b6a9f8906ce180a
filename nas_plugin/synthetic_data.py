"""Built-in synthetic YOLO detection dataset, so searches and tests never need a download.

Classes are told apart by shape only (colours are random per object), on varied backgrounds with
hard negatives. How hard is plain data (`PRESETS`): `standard` is learnable in a short CPU schedule
yet far from saturated, so architectures trained on it differ by more than seed noise; `easy` gives
clearly non-zero accuracy within a few epochs (the demo); `hard` is cluttered and small-object heavy.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import NASError
from .files import write_text

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")

# size: object extent as a fraction of the image side (log-uniform); objects/distractors/lines_over: inclusive
# count ranges; noise: range of the Gaussian noise sigma; blur: probability of a blur; contrast: least colour
# distance between an object and what is under it; backgrounds: kinds drawn from (gradient, noise, stripes,
# checkers); texture: how far a background's two colours lie apart (1 = as far as random colours do).
PRESETS = {
    "easy": dict(
        size=(0.2, 0.6),
        objects=(1, 4),
        distractors=(0, 0),
        lines_over=(0, 0),
        noise=(1, 4),
        blur=0.1,
        contrast=120,
        backgrounds=("gradient", "noise"),
        texture=0.4,
    ),
    "standard": dict(
        size=(0.12, 0.55),
        objects=(1, 6),
        distractors=(0, 2),
        lines_over=(0, 1),
        noise=(2, 8),
        blur=0.2,
        contrast=90,
        backgrounds=("gradient", "noise", "stripes", "checkers"),
        texture=0.6,
    ),
    "hard": dict(
        size=(0.06, 0.60),
        objects=(1, 8),
        distractors=(2, 6),
        lines_over=(0, 3),
        noise=(2, 14),
        blur=0.3,
        contrast=60,
        backgrounds=("gradient", "noise", "stripes", "checkers"),
        texture=1.0,
    ),
}
_MAX_OVERLAP = 0.25  # intersection over the smaller box: keeps occluded objects recognisable
_SPLITS = ("train", "val", "test")


def make_dataset(
    out: str | Path,
    train: int = 64,
    val: int = 16,
    imgsz: int = 128,
    seed: int = 0,
    classes: int | Sequence[str] | None = None,
    exist_ok: bool = False,
    preset: str = "standard",
    test: int = 0,
) -> Path:
    """Write a YOLO-format detection dataset under `out` and return the path of its data.yaml.

    `classes` is None (all of SHAPES), a count n (the first n of SHAPES) or a list of shape names.
    Each image gets its own generator seeded by (seed, split, index), so an image does not change
    when the number of other images does. data.yaml is written last, so an interrupted run never
    leaves a data.yaml that points at a half-written set. With exist_ok=True only what this function
    writes (data.yaml, its splits, Ultralytics' label caches) is replaced; other files are kept.
    `preset` names the difficulty (a key of PRESETS). `test` > 0 adds a test split that nothing trains or selects on,
    for figures free of the choices made on val (a search's pick, an epoch's checkpoint).
    """
    _check_count("train", train)
    _check_count("val", val)
    if not _is_int(test) or test < 0:
        raise NASError(f"test must be an integer >= 0, got {test!r}.")
    if not _is_int(imgsz) or imgsz < 32 or imgsz % 32:
        raise NASError(f"imgsz must be an integer >= 32 and a multiple of 32, got {imgsz!r}.")
    if not _is_int(seed) or seed < 0:
        raise NASError(f"seed must be a non-negative integer, got {seed!r}.")
    if preset not in PRESETS:
        raise NASError(f"preset {preset!r} is not allowed; choose from {list(PRESETS)}.")
    names = _resolve_classes(classes)

    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise NASError(f"output path {str(out)!r} exists and is not a directory; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not exist_ok:
            raise NASError(
                f"output directory {str(out)!r} is not empty; pass --exist-ok (exist_ok=True) to overwrite it."
            )
        # Remove the yaml first so a crash below cannot leave it pointing at a mixed set, and the
        # old splits (and Ultralytics' label caches) so no stale image survives a smaller rerun.
        (out / "data.yaml").unlink(missing_ok=True)
        for split in _SPLITS:  # a test split of an earlier run goes too, even when this one has none
            for sub in ("images", "labels"):
                shutil.rmtree(out / sub / split, ignore_errors=True)
            (out / "labels" / f"{split}.cache").unlink(missing_ok=True)

    shape_ids = [SHAPES.index(n) for n in names]
    for split_id, (split, count) in enumerate(zip(_SPLITS, (train, val, test))):
        if not count:
            continue
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, split_id, i])
            img, labels = _make_image(rng, imgsz, shape_ids, PRESETS[preset])
            stem = f"{split}_{i:06d}"
            quality = int(rng.integers(75, 96))
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise NASError(f"OpenCV failed to encode image {stem}.jpg.")
            (img_dir / f"{stem}.jpg").write_bytes(buf.tobytes())
            lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
            (lbl_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))

    yaml_lines = [
        f"path: {json.dumps(str(out))}",
        f"# nas_plugin synthetic data, preset {preset}, seed {seed}",
        "train: images/train",
        "val: images/val",
        *(["test: images/test"] if test else []),
        f"nc: {len(names)}",
        "names:",
        *(f"  {i}: {n}" for i, n in enumerate(names)),
    ]
    write_text(out / "data.yaml", "\n".join(yaml_lines) + "\n")
    return out / "data.yaml"


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_count(name: str, v) -> None:
    if not _is_int(v) or v < 1:
        raise NASError(f"{name} must be an integer >= 1, got {v!r}.")


def _resolve_classes(classes) -> list[str]:
    if classes is None:
        return list(SHAPES)
    if _is_int(classes):
        if not 1 <= classes <= len(SHAPES):
            raise NASError(f"classes must be between 1 and {len(SHAPES)} when given as a count, got {classes!r}.")
        return list(SHAPES[:classes])
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    names = list(classes)
    bad = [n for n in names if n not in SHAPES]
    if bad or not names or len(set(names)) != len(names):
        raise NASError(f"classes must be distinct names from {', '.join(SHAPES)}, got {names!r}.")
    return names


# ----------------------------------------------------------------------------- drawing


def _count(rng, bounds) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _make_image(rng: np.random.Generator, s: int, shape_ids: list[int], p: dict):
    img = _background(rng, s, p["backgrounds"], p["texture"])
    # Clutter under the objects: hard negatives that share edges/colours with real classes.
    for _ in range(_count(rng, p["distractors"])):
        _draw_distractor(rng, img, s)

    labels, boxes = [], []
    for _ in range(_count(rng, p["objects"])):
        for _attempt in range(20):
            cls = int(rng.integers(len(shape_ids)))
            size = s * math.exp(rng.uniform(*np.log(p["size"])))
            cx, cy = rng.uniform(size / 2, s - size / 2, size=2)
            box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
            if all(_overlap(box, b) <= _MAX_OVERLAP for b in boxes):
                break
        else:
            continue
        mask = np.zeros((s, s), np.float32)
        _draw_shape(rng, mask, SHAPES[shape_ids[cls]], cx, cy, size)
        ys, xs = np.nonzero(mask > 0.5)
        if len(xs) < 4:
            continue
        _paint(rng, img, mask, p["contrast"])
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        boxes.append((x1, y1, x2, y2))
        labels.append((cls, (x1 + x2) / 2 / s, (y1 + y2) / 2 / s, (x2 - x1) / s, (y2 - y1) / s))

    # Clutter over the objects: thin lines that cut through shapes without hiding them.
    for _ in range(_count(rng, p["lines_over"])):
        p1, p2 = rng.uniform(0, s, size=(2, 2))
        cv2.line(img, _pt(p1), _pt(p2), _colour(rng), int(rng.integers(1, 3)), cv2.LINE_AA, 4)

    if rng.random() < p["blur"]:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    img += rng.normal(0, rng.uniform(*p["noise"]), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def _overlap(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _colour(rng) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0, 255, size=3))


def _pt(p) -> tuple[int, int]:
    """Fixed-point coordinates (shift=4) for sub-pixel anti-aliased drawing."""
    return int(round(p[0] * 16)), int(round(p[1] * 16))


_BACKGROUNDS = ("gradient", "noise", "stripes", "checkers")


def _background(rng, s: int, kinds, texture: float) -> np.ndarray:
    def one():
        c1, c2 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
        c2 = c1 + texture * (c2 - c1)
        kind = _BACKGROUNDS.index(kinds[int(rng.integers(len(kinds)))])
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        a = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(a) + yy * math.sin(a)
        if kind == 0:  # linear gradient
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        elif kind == 1:  # smooth noise texture
            g = int(rng.integers(3, 17))
            t = cv2.resize(rng.random((g, g)).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
        elif kind == 2:  # stripes, soft or hard
            t = 0.5 + 0.5 * np.sin(proj * rng.uniform(4, 30) + rng.uniform(0, 6.3))
            if rng.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
        else:  # checkers, possibly rotated
            f = rng.uniform(3, 16)
            proj2 = -xx * math.sin(a) + yy * math.cos(a)
            t = ((np.floor(proj * f) + np.floor(proj2 * f)) % 2).astype(np.float32)
        return c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)

    img = one()
    if rng.random() < 0.5:
        alpha = rng.uniform(0.2, 0.6)
        img = (1 - alpha) * img + alpha * one()
    return np.ascontiguousarray(img, dtype=np.float32)


def _polygon(rng, kind: str, cx: float, cy: float, size: float) -> list[np.ndarray]:
    """Closed polygons in unit radius, scaled, rotated and placed; the extent stays within `size`."""
    r = size / 2
    if kind == "square":
        ar = rng.uniform(0.8, 1.0)
        pts = np.array([[-1, -ar], [1, -ar], [1, ar], [-1, ar]]) / math.hypot(1, ar)
    elif kind == "triangle":
        ang = np.deg2rad([90, 210, 330]) + rng.uniform(-0.15, 0.15, 3)
        pts = np.stack([np.cos(ang), np.sin(ang)], 1)
    elif kind == "star":
        n, inner = int(rng.choice([5, 5, 6])), rng.uniform(0.38, 0.5)
        ang = np.arange(2 * n) * math.pi / n
        rad = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    elif kind == "cross":
        t = rng.uniform(0.22, 0.36)
        pts = np.array(
            [[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t]]
        ) / math.hypot(1, t)
    elif kind == "ngon":  # pentagon..heptagon: hard negative for circles/stars
        n = int(rng.integers(5, 8))
        ang = np.arange(n) * 2 * math.pi / n
        pts = np.stack([np.cos(ang), np.sin(ang)], 1)
    elif kind == "blob":  # irregular, usually concave polygon (even angles, so it is never a triangle)
        n = int(rng.integers(6, 12))
        ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * math.pi / n
        rad = rng.uniform(0.35, 1.0, n)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    elif kind == "ell":  # half a cross / L or T bar: hard negative for crosses
        t = rng.uniform(0.22, 0.36)
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [-t, t]]) / math.hypot(1, t)
    else:
        raise AssertionError(kind)
    th = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    return [pts @ rot.T * r + (cx, cy)]


def _draw_shape(rng, mask: np.ndarray, kind: str, cx: float, cy: float, size: float) -> None:
    r = size / 2
    if kind in ("circle", "ring"):
        ax = (int(round(r * 16)), int(round(r * rng.uniform(0.85, 1.0) * 16)))
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(mask, _pt((cx, cy)), ax, ang, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        if kind == "ring":
            k = rng.uniform(0.45, 0.72)
            inner = (int(round(ax[0] * k)), int(round(ax[1] * k)))
            cv2.ellipse(mask, _pt((cx, cy)), inner, ang, 0, 360, 0.0, -1, cv2.LINE_AA, 4)
        return
    polys = _polygon(rng, kind, cx, cy, size)
    cv2.fillPoly(mask, [np.round(p * 16).astype(np.int32) for p in polys], 1.0, cv2.LINE_AA, 4)


def _paint(rng, img: np.ndarray, mask: np.ndarray, contrast: float) -> None:
    """Blend a random colour (sometimes a two-tone gradient) into img through the soft mask."""
    under = img[mask > 0.5].mean(0) if (mask > 0.5).any() else img.mean((0, 1))
    for _ in range(10):  # avoid near-invisible objects, but allow low-ish contrast
        col = np.array(_colour(rng), np.float32)
        if np.linalg.norm(col - under) > contrast:
            break
    if rng.random() < 0.3:
        col2 = np.array(_colour(rng), np.float32)
        ys = np.linspace(0, 1, img.shape[0], dtype=np.float32)[:, None, None]
        col = col + ys * (col2 - col) * 0.5
    alpha = mask[..., None] * rng.uniform(0.75, 1.0)
    img *= 1 - alpha
    img += alpha * col


def _draw_distractor(rng, img: np.ndarray, s: int) -> None:
    kind = int(rng.integers(5))
    col = _colour(rng)
    if kind == 0:  # line
        p1, p2 = rng.uniform(0, s, size=(2, 2))
        cv2.line(img, _pt(p1), _pt(p2), col, int(rng.integers(1, 4)), cv2.LINE_AA, 4)
    elif kind == 1:  # open arc: a partial ring, unlabelled
        r = s * rng.uniform(0.04, 0.25)
        c = rng.uniform(0, s, 2)
        start = rng.uniform(0, 360)
        cv2.ellipse(
            img,
            _pt(c),
            (int(r * 16), int(r * rng.uniform(0.6, 1) * 16)),
            0.0,
            start,
            start + rng.uniform(60, 220),
            col,
            int(rng.integers(1, 4)),
            cv2.LINE_AA,
            4,
        )
    else:  # filled blob / n-gon / L-bar, possibly running off the edge
        size = s * math.exp(rng.uniform(math.log(0.04), math.log(0.4)))
        c = rng.uniform(-size / 4, s + size / 4, 2)
        poly = _polygon(rng, ("blob", "ngon", "ell")[kind - 2], c[0], c[1], size)
        mask = np.zeros((s, s), np.float32)
        cv2.fillPoly(mask, [np.round(p * 16).astype(np.int32) for p in poly], 1.0, cv2.LINE_AA, 4)
        alpha = mask[..., None] * rng.uniform(0.5, 1.0)
        img *= 1 - alpha
        img += alpha * np.array(col, np.float32)
