"""The embedded synthetic warehouse: procedural frames with exact labels (docs/CONTRACTS.md layout).

``generate(out_dir, profile=..., n=..., weeks=..., seed=...)`` draws ``n`` frames of a warehouse
floor seen by four fixed cameras at two sites (``cam1``/``cam2`` at ``site_a``, ``cam3``/``cam4``
at ``site_b``; ``cam4`` is mounted high, so its objects are small) and writes them in the sample
layout: ``images/``, ``labels/`` (YOLO), ``data.yaml``, ``annotations.json`` (COCO),
``metadata.parquet`` (one row per image, slice columns plus the ground truth of every effect
applied) and ``boxes_metadata.parquet`` (``truncated`` / ``occluded`` per box). It then writes
``manifest.json`` (every file with size and sha256) and, last, the ``_COMPLETE`` marker, so a
watcher (``batch_is_complete``) never picks up a half-written batch.

The world, in taxonomy order: ``person`` (head, hard hat, hi-vis vest), ``forklift`` (yellow or
orange body, overhead guard, mast, forks, wheels), ``pallet`` (wooden slats and blocks), ``box``
(cardboard with a tape line), ``sku_a`` / ``sku_b`` (identical small blue packages that differ
only by a white printed mark, a circle or a cross, about 18% of the package side) and
``sku_new`` (a green tub with a yellow band: production weeks >= 3 only). Everything is drawn
with OpenCV on a per-camera background (concrete floor, lane markings, racking along the back
wall) that is the same in every run: the cameras are fixed.

Labels are exact: objects are painted far-to-near into the frame and into an object-id map, so
the box of an object is the extent of its *visible* pixels (clipped to the frame),
``occluded = 1 - visible / in-frame pixels`` (the hidden fraction, 0 = fully visible) and
``truncated`` says the object crosses a frame border. Post-render effects (blur, noise, ...)
do not move the labels.

Profiles:

* ``benchmark``: the stand-in for public data; week 1, day shift, bright/normal lighting, three
  cameras at a canonical, close framing (medium and large objects only), no overlap, no
  truncation, no corruption, JPEG quality 95, no ``sku_new``.
* ``production``: the same world with the five edge-case families at the rates of
  ``ProductionRates`` (``PRODUCTION_RATES``): distribution shift (colour cast, sensor noise,
  low JPEG quality), occlusion and truncation, frequent look-alikes, adversarial conditions
  (motion blur, dirty lens, flicker banding) and week-by-week drift (more night shifts, new
  packaging colours, ``sku_new`` from week 3). Frames come in bursts of a few seconds per camera
  (near-duplicates that share a scene), so the ingest grouping has something to group.

Deterministic: the same arguments give byte-identical files (``data.yaml``'s ``path`` aside, which
is the absolute output folder). ``week=N`` generates one weekly batch whose frames all belong to
week N; file names carry the week, camera and seed (or ``batch_id``), so weekly batches landed
side by side never collide.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from preflight.data.landing import (
    COMPLETE_MARKER,
    INCOMPLETE_MARKER,
    MANIFEST_NAME,
    mark_complete,
    write_manifest,
)
from preflight.synth.draw import (
    _background,
    _render,
)
from preflight.synth.effects import (
    _effects,
    _vignette,
)
from preflight.synth.scene import (
    _PROFILE_CODE,
    CLASS_NAMES,
    N_CLASSES,
    PRODUCTION_RATES,
    Camera,
    ProductionRates,
    _Cond,
    _moved,
    _Obj,
    _plan,
    _World,
)

PROFILES: tuple[str, ...] = ("production", "benchmark")
METADATA_NAME = "metadata.parquet"
BOX_METADATA_NAME = "boxes_metadata.parquet"
COCO_NAME = "annotations.json"

METADATA_COLUMNS: tuple[str, ...] = (
    "file_name", "image_id", "site", "camera", "shift", "captured_at", "week", "lighting",
    "blur", "lens", "colour_cast", "noise", "jpeg_quality", "flicker", "profile")
BOX_METADATA_COLUMNS: tuple[str, ...] = (
    "file_name", "box_index", "class_id", "area_px", "truncated", "occluded")


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate`` wrote."""

    out_dir: Path
    profile: str
    n_images: int
    n_boxes: int
    seconds: float
    class_counts: dict[str, int]
    weeks: tuple[int, ...]
    seed: int
    image_size: int
    batch_id: str | None = None
    files: int = 0

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (f"synth {self.profile}: {self.n_images} images, {self.n_boxes} boxes, "
                f"weeks {','.join(map(str, self.weeks))}, {self.seconds:.1f} s "
                f"({self.images_per_second:.0f} images/s) -> {self.out_dir}")


# -------------------------------------------------------------------------------- generate
def _clean_target(out: Path) -> None:
    """Refuse a non-empty folder that is not a generator output; clear a previous output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = list(out.iterdir())
    if not entries:
        return
    ours = any((out / m).exists() for m in (COMPLETE_MARKER, INCOMPLETE_MARKER, MANIFEST_NAME))
    if not ours:
        raise FileExistsError(f"{out} is not empty and is not a synthetic sample (no "
                              f"{MANIFEST_NAME} / {COMPLETE_MARKER}); pick an empty folder")
    (out / COMPLETE_MARKER).unlink(missing_ok=True)  # first: never complete while rewriting
    for name in ("images", "labels"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST_NAME, METADATA_NAME, BOX_METADATA_NAME, COCO_NAME, "data.yaml"):
        (out / name).unlink(missing_ok=True)


def _tag(seed: int, batch_id: str | None) -> str:
    if batch_id is None:
        return f"s{seed}"
    tag = re.sub(r"[^A-Za-z0-9_-]+", "-", str(batch_id)).strip("-")
    if not tag:
        raise ValueError(f"batch_id {batch_id!r} has no usable characters (letters, digits, _ -)")
    return tag


@dataclass(frozen=True)
class _Request:
    """``generate``'s arguments, checked and resolved: one value each, the week of every frame."""

    profile: str
    n: int
    size: int
    seed: int
    tag: str
    batch_id: str | None
    week_list: list[int]
    week_key: int
    rates: ProductionRates

    @property
    def code(self) -> int:
        return _PROFILE_CODE[self.profile]

    @property
    def weeks(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.week_list)))


def _request(profile: str, n: int, weeks: int, seed: int, image_size: int, week: int | None,
             batch_id: str | None, rates: ProductionRates) -> _Request:
    """Check ``generate``'s arguments (a clear message for each) and spread the frames over weeks."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if int(n) < 1:
        raise ValueError(f"n must be positive, got {n}")
    if int(weeks) < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    if not 32 <= int(image_size) <= 4096:
        raise ValueError(f"image_size must be in 32..4096, got {image_size}")
    if week is not None and int(week) < 1:
        raise ValueError(f"week must be at least 1, got {week}")
    if profile == "benchmark" and week not in (None, 1):
        raise ValueError("the benchmark profile is week 1 only")
    n = int(n)
    if profile == "benchmark":
        week_list = [1] * n
    elif week is not None:
        week_list = [int(week)] * n
    else:
        week_list = [(i * int(weeks)) // n + 1 for i in range(n)]  # even spread, in order
    return _Request(profile=profile, n=n, size=int(image_size), seed=int(seed),
                    tag=_tag(int(seed), batch_id), batch_id=batch_id, week_list=week_list,
                    week_key=int(week) if week is not None else 0, rates=rates)


class _Frames:
    """Frames of one request: per-camera background and vignette, the scene of the current burst."""

    def __init__(self, req: _Request) -> None:
        self.req = req
        self.world = _World(req.profile, req.size, req.rates)
        self.backgrounds: dict[str, np.ndarray] = {}
        self.vignettes: dict[str, np.ndarray] = {}
        self.scene: tuple[list[_Obj], tuple[float, float] | None] = ([], None)
        self.burst = -1
        self.seen: set[str] = set()  # content ids must be unique (ingest / validation)

    def _fixed(self, cam: Camera) -> None:
        """Draw a camera's background and vignette the first time it is seen (fixed cameras)."""
        if cam.name in self.backgrounds:
            return
        S = self.req.size
        self.backgrounds[cam.name] = _background(cam, S, self.world.scales(cam)[0])
        vig_rng = np.random.default_rng([cam.layout_seed, 9])
        self.vignettes[cam.name] = _vignette(S, vig_rng.uniform(0.3, 0.7),
                                             vig_rng.uniform(0.1, 0.4))

    def frame(self, idx: int, cond: _Cond) -> tuple[bytes, list[tuple]]:
        """Frame ``idx``: its JPEG bytes (unique content) and its boxes."""
        req, cam = self.req, cond.camera
        self._fixed(cam)
        frng = np.random.default_rng([req.seed, req.code, req.week_key, 0xF0, idx])
        first = cond.burst != self.burst
        if first:
            srng = np.random.default_rng([req.seed, req.code, req.week_key, 0x5C, cond.burst])
            self.scene = self.world.scene(srng, cam, cond.week)
            self.burst = cond.burst
        objs = _moved(self.scene[0], frng, req.size, first)
        img, boxes = _render(self.backgrounds[cam.name], objs, self.scene[1])
        for _attempt in range(50):
            out_img = _effects(img, cond, frng, self.vignettes[cam.name], req.rates)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out_img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg_quality])
            if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
                raise RuntimeError("JPEG encoding failed")
            data = buf.tobytes()
            digest = hashlib.sha1(data).hexdigest()
            if digest not in self.seen:
                break
        self.seen.add(digest)
        return data, boxes


@dataclass
class _Labels:
    """The labels of a sample as they accumulate: table rows, COCO records, class counts."""

    size: int
    profile: str
    meta_rows: list[dict[str, Any]] = field(default_factory=list)
    box_rows: list[dict[str, Any]] = field(default_factory=list)
    coco_images: list[dict[str, Any]] = field(default_factory=list)
    coco_anns: list[dict[str, Any]] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=lambda: [0] * N_CLASSES)

    def add(self, file_name: str, image_id: int, cond: _Cond, boxes: list[tuple]) -> str:
        """Record one frame's boxes and metadata; return its YOLO label text."""
        S = self.size
        lines = []
        for bi, (cls, x0, y0, x1, y1, trunc, occ) in enumerate(boxes):
            w, h = x1 - x0, y1 - y0
            lines.append(f"{cls} {(x0 + x1) / 2 / S:.6f} {(y0 + y1) / 2 / S:.6f} "
                         f"{w / S:.6f} {h / S:.6f}\n")
            self.box_rows.append({"file_name": file_name, "box_index": bi, "class_id": cls,
                                  "area_px": w * h, "truncated": trunc, "occluded": occ})
            self.coco_anns.append({"id": len(self.coco_anns) + 1, "image_id": image_id,
                                   "category_id": cls, "bbox": [x0, y0, w, h], "area": w * h,
                                   "iscrowd": 0, "truncated": trunc, "occluded": occ})
            self.class_counts[cls] += 1
        self.coco_images.append({"id": image_id, "file_name": file_name, "width": S,
                                 "height": S})
        cam = cond.camera
        self.meta_rows.append({
            "file_name": file_name, "image_id": image_id, "site": cam.site, "camera": cam.name,
            "shift": cond.shift, "captured_at": cond.captured_at, "week": cond.week,
            "lighting": cond.lighting, "blur": cond.blur, "lens": cond.lens,
            "colour_cast": cond.colour_cast, "noise": cond.noise,
            "jpeg_quality": cond.jpeg_quality, "flicker": cond.flicker, "profile": self.profile,
        })
        return "".join(lines)


def generate(out_dir: str | Path, *, profile: str = "production", n: int = 400, weeks: int = 4,
             seed: int = 0, image_size: int = 320, week: int | None = None,
             progress: bool = False, batch_id: str | None = None,
             rates: ProductionRates = PRODUCTION_RATES) -> SynthSummary:
    """Generate ``n`` labelled frames in ``out_dir`` (see the module doc); ``_COMPLETE`` last.

    ``week=N``: one weekly batch, every frame in week N (production; benchmark is week 1 only).
    Otherwise frames are spread evenly over weeks ``1..weeks`` (benchmark: all week 1).
    ``batch_id`` replaces the seed in file names (``w02_cam3_<batch_id>_000123.jpg``).
    """
    t0 = time.perf_counter()
    req = _request(profile, n, weeks, seed, image_size, week, batch_id, rates)
    out = Path(out_dir)
    _clean_target(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("generation in progress\n", encoding="utf-8")
    labels = _write_frames(out, req, progress)
    n_files = _finish(out, req, labels)
    return SynthSummary(
        out_dir=out, profile=req.profile, n_images=req.n, n_boxes=len(labels.box_rows),
        seconds=time.perf_counter() - t0,
        class_counts={name: labels.class_counts[i] for i, name in enumerate(CLASS_NAMES)},
        weeks=req.weeks, seed=req.seed, image_size=req.size, batch_id=req.batch_id,
        files=n_files)


def _write_frames(out: Path, req: _Request, progress: bool) -> _Labels:
    """Draw, encode and write every frame and its YOLO label file; return the labels."""
    conds = _plan(req.profile, req.n, req.week_list, req.seed, req.week_key, req.rates)
    frames = _Frames(req)
    labels = _Labels(size=req.size, profile=req.profile)
    for idx, cond in enumerate(tqdm(conds, desc=f"synth {req.profile}", unit="img",
                                    disable=not progress)):
        data, boxes = frames.frame(idx, cond)
        stem = f"w{cond.week:02d}_{cond.camera.name}_{req.tag}_{idx:06d}"
        (out / "images" / f"{stem}.jpg").write_bytes(data)
        text = labels.add(f"{stem}.jpg", idx + 1, cond, boxes)
        (out / "labels" / f"{stem}.txt").write_text(text, encoding="utf-8")
    return labels


def _finish(out: Path, req: _Request, labels: _Labels) -> int:
    """Write the tables, COCO, ``data.yaml``, the manifest and ``_COMPLETE``; return the file count."""
    _write_tables(out, labels.meta_rows, labels.box_rows)
    info = {"generator": "preflight.synth.generate", "profile": req.profile, "seed": req.seed,
            "image_size": req.size, "n": req.n, "weeks": list(req.weeks),
            "batch_id": req.batch_id}
    (out / COCO_NAME).write_text(json.dumps({
        "info": info,
        "images": labels.coco_images, "annotations": labels.coco_anns,
        "categories": [{"id": i, "name": name} for i, name in enumerate(CLASS_NAMES)],
    }, separators=(",", ":")), encoding="utf-8")
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out.resolve()), "train": "images", "val": "images",
         "names": dict(enumerate(CLASS_NAMES))}, sort_keys=False), encoding="utf-8")
    (out / INCOMPLETE_MARKER).unlink(missing_ok=True)
    manifest = write_manifest(out, extra={"generator": info})
    n_files = json.loads(manifest.read_text(encoding="utf-8"))["n_files"]
    mark_complete(out)
    return n_files


def _write_tables(out: Path, meta_rows: list[dict[str, Any]],
                  box_rows: list[dict[str, Any]]) -> None:
    meta = pd.DataFrame(meta_rows, columns=list(METADATA_COLUMNS))
    meta["captured_at"] = pd.to_datetime(meta["captured_at"]).astype("datetime64[us]")
    for col in ("image_id", "week", "jpeg_quality"):
        meta[col] = meta[col].astype("int64")
    for col in ("colour_cast", "noise", "flicker"):
        meta[col] = meta[col].astype(bool)
    meta.to_parquet(out / METADATA_NAME, index=False)
    boxes = pd.DataFrame(box_rows, columns=list(BOX_METADATA_COLUMNS))
    boxes = boxes.astype({"box_index": "int64", "class_id": "int64", "area_px": "int64",
                          "truncated": bool, "occluded": "float64"})
    boxes.to_parquet(out / BOX_METADATA_NAME, index=False)


__all__ = ["BOX_METADATA_COLUMNS", "METADATA_COLUMNS", "PROFILES", "SynthSummary", "generate"]
