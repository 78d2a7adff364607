"""Classification samples: object crops cut from detection frames, and the reader for them.

:func:`crops_from_detection_sample` turns a detection sample (the generator's, or any YOLO/COCO
folder ``ingest`` reads) into a classification sample of object crops::

    OUT/
      images/<class_name>/<frame stem>-<hash>_b<k>.jpg  # ImageFolder layout, size x size JPEG
      labels.csv                                        # path,label  (path relative to OUT)
      metadata.parquet                                  # one row per crop, keyed by file_name
      crops.json                                        # settings and counts; written last

A crop is the box grown by ``pad`` of its side on every side (clipped to the frame) and resized to
``size`` x ``size`` (aspect not kept: the model sees every object at the same scale). Crops are cut
from the frames as they are, so they keep the frame's edge cases (darkness, blur, smeared lenses,
low JPEG quality, occlusion, truncation) and any look-alike classes. ``metadata``
carries the frame's slice metadata plus per crop ``occluded``, ``truncated``, ``area_px``, the box
in the frame (``box_x, box_y, box_w, box_h``) and the source frame (``frame_file_name``,
``frame_image_id`` = the frame's content id, ``box_index``). ``file_name`` is relative to
``images/`` (``crate/frame_000003-1f0c2a9e_b02.jpg``: the frame's flattened name, a hash of
its full name -- two frames whose names flatten alike never share a crop name -- and the box's
index), as in the detection contract.

:func:`read_classification_sample` reads an ImageFolder (``images/<class>/...`` or
``<dir>/<class>/...``) or a ``labels.csv`` (``path,label``; ``label`` a class name or id) into an
images table (``image_id, file_name, path, label, label_name, width, height`` + split, slices,
pixel properties and bins; ``size_bin`` of the object in its frame when ``area_px`` is known) and a
quarantine table (``preflight.data.errors`` columns). Nothing
raises for one bad file: undecodable or empty files, unknown labels, paths leaving the folder,
duplicate rows and byte-identical copies are quarantined with a reason code and a sentence.
The split reuses ingestion's grouping: crops of one frame share the frame's group (camera +
``captured_at`` chained in a window, else the frame's content id), so near-duplicate frames never
straddle fine-tune and eval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from preflight.data.errors import IngestError, QuarantineRecord, quarantine_frame, reason_counts
from preflight.data.filenames import read_image_bgr
from preflight.data.formats import IMAGE_EXTENSIONS, safe_path
from preflight.data.ingest import (
    SLICE_COLUMNS,
    _join_metadata,
    assign_groups,
    assign_split,
    content_id,
    find_metadata,
    ingest,
    read_metadata,
    stratum_keys,
)
from preflight.data.properties import (
    BINS,
    PROPERTY_COLUMNS,
    bin_values,
    decode,
    pixel_properties,
    size_bin,
)
from preflight.taxonomy import Taxonomy

log = logging.getLogger(__name__)

LABELS_CSV = "labels.csv"
METADATA_NAME = "metadata.parquet"
CROPS_SUMMARY = "crops.json"
#: Leading columns of the classification images table (the rest: split, slices, properties).
CLASSIFY_IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id", "file_name", "path", "label", "label_name", "width", "height", "file_size",
    "split", "group_id", "stratum")
#: Split strata for classification: class first, so every class is in both splits when it can be.
CLASSIFY_STRATA: tuple[str, ...] = ("label_name",)
#: Ingestion columns of a frame that are not its metadata (never copied onto its crops).
_FRAME_INTERNAL = {
    "image_id", "file_name", "source", "path", "width", "height", "file_size", "decode_ok",
    "decode_error", "decode_detail", "source_image_id", "split", "group_id", "stratum",
    *PROPERTY_COLUMNS, *(b[0] for b in BINS.values())}
#: Metadata columns that would shadow the label (ingestion's join renames its own reserved ones).
_LABEL_COLUMNS = ("label", "label_name")


# ------------------------------------------------------------------------------ crops
@dataclass(frozen=True)
class CropSummary:
    """What :func:`crops_from_detection_sample` wrote (``skipped``: reason -> boxes not cropped)."""

    out_dir: Path
    n_frames: int
    n_crops: int
    class_counts: dict[str, int]
    skipped: dict[str, int]
    frames_quarantined: dict[str, int]
    size: int
    pad: float
    min_side: int
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


#: the readable part of a crop's name is cut here (a file name has at most 255 bytes)
_STEM_CHARS = 96


def _crop_stem(file_name: str, taken: dict[str, str]) -> str:
    """``sub/dir/frame.jpg`` -> ``sub__dir__frame-<hash>``: one name per frame of the sample.

    Flattening maps many names to one (``café.jpg`` and ``caf_.jpg``; ``a/b.jpg`` and
    ``a__b.jpg``), so the name ends in a hash of the frame's full file name (the sample's key);
    ``taken`` (stem -> frame file name, of the frames named so far) lengthens the hash in the
    unlikely case two short hashes still meet, so no crop ever overwrites another."""
    stem = str(Path(file_name).with_suffix("")).replace("\\", "/").replace("/", "__")
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:_STEM_CHARS]
    digest = hashlib.sha1(file_name.encode("utf-8", "surrogateescape")).hexdigest()
    for length in (8, len(digest)):
        name = f"{readable}-{digest[:length]}"
        if taken.setdefault(name, file_name) == file_name:
            return name
    raise IngestError(f"two frames named {taken[name]!r} and {file_name!r} share a sha1")


def _crop_window(x: float, y: float, w: float, h: float, W: int, H: int,
                 pad: float) -> tuple[int, int, int, int]:
    """The padded box as integer pixel bounds ``x0, y0, x1, y1`` inside the frame."""
    x0 = int(np.floor(max(0.0, x - pad * w)))
    y0 = int(np.floor(max(0.0, y - pad * h)))
    x1 = int(np.ceil(min(float(W), x + w + pad * w)))
    y1 = int(np.ceil(min(float(H), y + h + pad * h)))
    return x0, y0, x1, y1


def _prepare_out_dir(out: Path) -> Path:
    """A fresh temporary sibling of ``out`` (refuses to overwrite a folder that is not ours)."""
    if out.exists():
        ours = {"images", LABELS_CSV, METADATA_NAME, CROPS_SUMMARY}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise IngestError(f"{out} exists and holds {foreign[:5]}, which are not crops; "
                              "choose an empty or new folder")
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    return tmp


def crops_from_detection_sample(sample_dir: str | Path, out_dir: str | Path, *, size: int = 96,
                                min_side: int = 8, pad: float = 0.1, jpeg_quality: int = 95,
                                taxonomy: Taxonomy) -> CropSummary:
    """Cut every labelled box of a detection sample into a classification sample (module doc).

    Boxes are skipped (and counted in ``skipped``) when crowd (``iscrowd``), without usable
    coordinates, or narrower/shorter than ``min_side`` px after clipping to the frame. Frames the
    ingestion quarantines or cannot decode give no crops (counted in ``frames_quarantined``).
    Deterministic: the same sample and settings give byte-identical files.
    """
    t0 = time.perf_counter()
    if int(size) < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    if not 0.0 <= float(pad) <= 1.0:
        raise ValueError(f"pad must be in [0, 1], got {pad}")
    out = Path(out_dir)
    landed = ingest(sample_dir, taxonomy=taxonomy)
    frames = landed.images
    renamed = {v: k for k, v in (landed.stats.get("metadata", {}).get("renamed_columns") or {}
                                 ).items()}
    meta_cols = [c for c in frames.columns if c not in _FRAME_INTERNAL or c in renamed]
    frames_quarantined = reason_counts(landed.quarantine, "image")
    bad = frames[~frames["decode_ok"].astype(bool)]
    for code in bad["decode_error"].fillna("undecodable_image"):
        frames_quarantined[code] = frames_quarantined.get(code, 0) + 1
    frames = frames[frames["decode_ok"].astype(bool)]
    boxes = landed.boxes.sort_values("box_id", kind="stable")
    boxes = boxes.assign(box_index=boxes.groupby("file_name", sort=False).cumcount())
    by_frame = dict(tuple(boxes.groupby("file_name", sort=False)))

    tmp = _prepare_out_dir(out)
    try:
        rows, skipped = _cut(frames, by_frame, meta_cols, renamed, tmp, size=int(size),
                             min_side=min_side, pad=float(pad), jpeg_quality=int(jpeg_quality),
                             taxonomy=taxonomy, frames_quarantined=frames_quarantined)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    table = pd.DataFrame(rows)
    if not len(table):
        table = pd.DataFrame(columns=["file_name", "class_name", "frame_file_name",
                                      "frame_image_id", "box_index", "area_px", "occluded",
                                      "truncated"])
    table = table.sort_values("file_name", kind="stable").reset_index(drop=True)
    labels = pd.DataFrame({"path": "images/" + table["file_name"].astype(str),
                           "label": table["class_name"]})
    labels.to_csv(tmp / LABELS_CSV, index=False, lineterminator="\n")
    table.drop(columns=["class_name"]).to_parquet(tmp / METADATA_NAME, index=False)
    counts = table["class_name"].value_counts()
    summary = CropSummary(
        out_dir=out, n_frames=int(len(frames)), n_crops=int(len(table)),
        class_counts={n: int(counts.get(n, 0)) for n in taxonomy.names},
        skipped=dict(sorted(skipped.items())), frames_quarantined=frames_quarantined,
        size=int(size), pad=float(pad), min_side=int(min_side),
        seconds=time.perf_counter() - t0,
        settings={"source": str(Path(sample_dir).resolve()), "jpeg_quality": int(jpeg_quality),
                  "format": landed.stats.get("format")})
    doc = {k: v for k, v in asdict(summary).items() if k not in ("out_dir", "seconds")}
    (tmp / CROPS_SUMMARY).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n",
                                     "utf-8")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return summary


def _cut(frames: pd.DataFrame, by_frame: dict[str, pd.DataFrame], meta_cols: list[str],
         renamed: dict[str, str], tmp: Path, *, size: int, min_side: int, pad: float,
         jpeg_quality: int, taxonomy: Taxonomy, frames_quarantined: dict[str, int]
         ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write the crops of every frame into ``tmp/images``; one metadata row per crop."""
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    stems: dict[str, str] = {}
    for frame in frames.sort_values("file_name", kind="stable").to_dict("records"):
        frame_boxes = by_frame.get(frame["file_name"])
        if frame_boxes is None or not len(frame_boxes):
            continue
        bgr = read_image_bgr(frame["path"])
        if bgr is None:  # decoded at ingestion; only a file changed underfoot lands here
            frames_quarantined["unreadable_file"] = frames_quarantined.get("unreadable_file", 0) + 1
            continue
        H, W = bgr.shape[:2]
        meta = {renamed.get(c, c): frame[c] for c in meta_cols}
        stem = _crop_stem(str(frame["file_name"]), stems)
        for box in frame_boxes.itertuples(index=False):
            reason = None
            if not 0 <= int(box.class_id) < len(taxonomy):
                reason = "unknown_class"
            elif not pd.isna(box.iscrowd) and int(box.iscrowd) == 1:
                reason = "crowd"
            elif not np.all(np.isfinite([box.x, box.y, box.w, box.h])) or box.w <= 0 or box.h <= 0:
                reason = "invalid_box"
            else:
                vis_w = min(W, box.x + box.w) - max(0.0, box.x)
                vis_h = min(H, box.y + box.h) - max(0.0, box.y)
                if vis_w < min_side or vis_h < min_side:
                    reason = "too_small"
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            x0, y0, x1, y1 = _crop_window(box.x, box.y, box.w, box.h, W, H, pad)
            patch = bgr[y0:y1, x0:x1]
            interp = cv2.INTER_AREA if max(patch.shape[:2]) > size else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (size, size), interpolation=interp)
            class_name = taxonomy.names[int(box.class_id)]
            file_name = f"{class_name}/{stem}_b{int(box.box_index):02d}.jpg"
            target = tmp / "images" / file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), patch, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise OSError(f"cannot write crop {target}")
            rows.append({
                "file_name": file_name, "class_name": class_name, **meta,
                "frame_file_name": frame["file_name"], "frame_image_id": frame["image_id"],
                "box_index": int(box.box_index), "box_x": float(box.x), "box_y": float(box.y),
                "box_w": float(box.w), "box_h": float(box.h), "area_px": float(box.area),
                "occluded": box.occluded, "truncated": box.truncated})

    return rows, skipped


# ------------------------------------------------------------------------------ reading
@dataclass
class _Entry:
    source: str  # relative to the sample folder (posix), for messages
    path: Path
    label_name: str
    line: int | None = None


def _label_of(value: str, taxonomy: Taxonomy) -> str | None:
    """A class name, or a class id written as an integer; None when neither."""
    text = str(value).strip()
    if text in taxonomy.names:
        return text
    if re.fullmatch(r"\d+", text) and int(text) < len(taxonomy):
        return taxonomy.names[int(text)]
    return None


def _unknown_label(source: str, label: str, taxonomy: Taxonomy, where: str) -> str:
    return (f"{source}: label {label!r} ({where}) is not in the taxonomy "
            f"{list(taxonomy.names)}; rename it or add the class")


def _folder_entries(root: Path, taxonomy: Taxonomy
                    ) -> tuple[list[_Entry], list[QuarantineRecord]]:
    images_root = root / "images" if (root / "images").is_dir() else root
    entries: list[_Entry] = []
    records: list[QuarantineRecord] = []
    for p in sorted(images_root.rglob("*")):
        if p.is_dir() or p.name.startswith("."):
            continue
        source = p.relative_to(root).as_posix()
        if p.relative_to(images_root).parent == Path("."):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                records.append(QuarantineRecord(
                    source, "missing_label", f"{source}: not inside a class folder, so it has "
                    f"no label; move it to <class>/ (one of {list(taxonomy.names)})",
                    level="image"))
            continue  # loose non-image files at the top (README, data.yaml) are not samples
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            records.append(QuarantineRecord(
                source, "unsupported_file",
                f"{source}: not an image file type ({sorted(IMAGE_EXTENSIONS)})", level="file"))
            continue
        if safe_path(root, source) is None:
            records.append(QuarantineRecord(
                source, "path_escape", f"{source}: resolves outside the sample folder; not read",
                level="image"))
            continue
        folder = p.relative_to(images_root).parts[0]
        label = _label_of(folder, taxonomy)
        if label is None:
            records.append(QuarantineRecord(
                source, "unknown_label", _unknown_label(source, folder, taxonomy, "its folder"),
                level="image"))
            continue
        entries.append(_Entry(source, p.resolve(), label))
    return entries, records


def _csv_entries(root: Path, csv_path: Path, taxonomy: Taxonomy
                 ) -> tuple[list[_Entry], list[QuarantineRecord]]:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise IngestError(f"{csv_path}: cannot be read as CSV ({exc})") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    if "path" not in columns or "label" not in columns:
        raise IngestError(f"{csv_path}: needs a header with 'path' and 'label' columns, got "
                          f"{list(table.columns)}")
    src_name = csv_path.name
    entries: list[_Entry] = []
    records: list[QuarantineRecord] = []
    seen: dict[Path, int] = {}
    for i, (raw_path, raw_label) in enumerate(zip(table[columns["path"]], table[columns["label"]],
                                                  strict=True)):
        line = i + 2  # line 1 is the header
        name, label_text = str(raw_path).strip(), str(raw_label).strip()
        at = f"{src_name} line {line}"
        if not name:
            records.append(QuarantineRecord(src_name, "missing_path", f"{at}: empty path",
                                            level="image", line=line))
            continue
        resolved = safe_path(root, name)
        if resolved is None:
            records.append(QuarantineRecord(
                name, "path_escape", f"{at}: path {name!r} leaves the sample folder "
                "(absolute, '..' or a link out); not read", level="image", line=line))
            continue
        source = resolved.relative_to(root).as_posix()
        if not label_text:
            records.append(QuarantineRecord(source, "missing_label", f"{at}: {source} has no "
                                            "label", level="image", line=line))
            continue
        label = _label_of(label_text, taxonomy)
        if label is None:
            records.append(QuarantineRecord(
                source, "unknown_label", _unknown_label(source, label_text, taxonomy, at),
                level="image", line=line))
            continue
        if not resolved.is_file():
            records.append(QuarantineRecord(source, "missing_file",
                                            f"{at}: {source} does not exist", level="image",
                                            line=line))
            continue
        if resolved in seen:
            records.append(QuarantineRecord(
                source, "duplicate_row", f"{at}: {source} is already listed on line "
                f"{seen[resolved]}; this row is ignored", level="image", line=line))
            continue
        seen[resolved] = line
        entries.append(_Entry(source, resolved, label, line))
    return entries, records


def _norm_file_name(source: str) -> str:
    return source[len("images/"):] if source.startswith("images/") else source


def _load(entries: list[_Entry], taxonomy: Taxonomy
          ) -> tuple[pd.DataFrame, list[QuarantineRecord]]:
    rows: list[dict[str, Any]] = []
    records: list[QuarantineRecord] = []
    first_of: dict[str, dict[str, Any]] = {}
    for e in entries:
        try:
            data = e.path.read_bytes()
        except OSError as exc:
            records.append(QuarantineRecord(e.source, "unreadable_file",
                                            f"{e.source}: cannot be read ({exc})",
                                            level="image", line=e.line))
            continue
        image_id = content_id(data)
        dec = decode(data)
        if dec.image is None:
            records.append(QuarantineRecord(
                e.source, dec.error or "undecodable_image", f"{e.source}: {dec.detail}",
                level="image", image_id=image_id, line=e.line))
            continue
        twin = first_of.get(image_id)
        if twin is not None:  # identical bytes: one content id, one row
            same = twin["label_name"] == e.label_name
            records.append(QuarantineRecord(
                e.source, "duplicate_image" if same else "conflicting_labels",
                f"{e.source}: same bytes as {twin['source']}"
                + (" (same label); counted once" if same else
                   f" but labelled {e.label_name!r} there {twin['label_name']!r}; fix one label"),
                level="image", image_id=image_id, line=e.line))
            continue
        h, w = dec.image.shape[:2]
        row = {"image_id": image_id, "file_name": _norm_file_name(e.source), "path": str(e.path),
               "label": taxonomy.id_of(e.label_name), "label_name": e.label_name,
               "width": int(w), "height": int(h), "file_size": len(data), "source": e.source,
               **pixel_properties(dec.image)}
        first_of[image_id] = row
        rows.append(row)
    conflicted = {r.image_id for r in records if r.reason_code == "conflicting_labels"}
    if conflicted:  # the first copy of a conflicting pair is no more trustworthy than the second
        for row in rows:
            if row["image_id"] in conflicted:
                records.append(QuarantineRecord(
                    row["source"], "conflicting_labels",
                    f"{row['source']}: an identical file elsewhere has another label; fix one "
                    "label", level="image", image_id=row["image_id"]))
        rows = [r for r in rows if r["image_id"] not in conflicted]
    images = pd.DataFrame(rows, columns=["image_id", "file_name", "path", "label", "label_name",
                                         "width", "height", "file_size", "source",
                                         *PROPERTY_COLUMNS])
    for col, dtype in (("label", "int64"), ("width", "int64"), ("height", "int64"),
                       ("file_size", "int64")):
        images[col] = images[col].astype(dtype)
    for col in PROPERTY_COLUMNS:
        images[col] = images[col].astype(float)
    return images, records


def classification_groups(images: pd.DataFrame, window_minutes: float = 10.0) -> pd.Series:
    """Near-duplicate groups of samples: ingestion's camera + ``captured_at`` chaining; samples
    without a timestamp but with a source frame (``frame_image_id``) share the frame's group."""
    groups = assign_groups(images, window_minutes)
    if "frame_image_id" in images.columns:
        frame = images["frame_image_id"]
        use = groups.str.startswith("h:") & frame.notna()
        groups = groups.where(~use, "f:" + frame.astype(str))
    return groups


def assign_classification_split(images: pd.DataFrame, *, eval_fraction: float = 0.3,
                                group_window_minutes: float = 10.0,
                                strata: tuple[str, ...] = CLASSIFY_STRATA,
                                seed: int = 0) -> pd.DataFrame:
    """``images`` with ``group_id``, ``stratum`` and ``split`` (``finetune`` | ``eval``) from
    ingestion's group-whole, stratified, order-independent split."""
    if not 0.0 < eval_fraction < 1.0:
        raise IngestError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    out = images.copy()
    out["group_id"] = classification_groups(out, group_window_minutes)
    used = [c for c in strata if c in out.columns]
    out["stratum"] = stratum_keys(out, used)
    out["split"] = assign_split(out.assign(decode_ok=True), eval_fraction=eval_fraction,
                                seed=seed)
    return out


def read_classification_sample(sample_dir: str | Path, taxonomy: Taxonomy, *,
                               labels_csv: str | Path | None = None,
                               metadata_path: str | Path | None = None,
                               eval_fraction: float = 0.3, group_window_minutes: float = 10.0,
                               strata: tuple[str, ...] = CLASSIFY_STRATA, seed: int = 0
                               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a classification sample into ``(images, quarantine)`` (see the module doc).

    Labels come from ``labels_csv`` (default ``<dir>/labels.csv`` when present; paths relative to
    the sample folder) or else from the ImageFolder layout. The metadata table (default
    ``<dir>/metadata.parquet`` / ``.csv``, keyed by ``file_name``) is joined as in ingestion;
    pixel-derived bins stand in for the slices it lacks.
    """
    root = Path(sample_dir)
    if not root.is_dir():
        raise IngestError(f"classification sample {root} does not exist or is not a folder")
    root = root.resolve()
    csv_path = Path(labels_csv) if labels_csv is not None else root / LABELS_CSV
    if labels_csv is not None and not csv_path.is_file():
        raise IngestError(f"labels file {csv_path} does not exist")
    entries, records = (_csv_entries(root, csv_path.resolve(), taxonomy) if csv_path.is_file()
                        else _folder_entries(root, taxonomy))
    images, load_records = _load(entries, taxonomy)
    records += load_records

    meta_columns: set[str] = set()
    meta_file = Path(metadata_path) if metadata_path is not None else find_metadata(root)
    if meta_file is not None:
        if not meta_file.is_file():
            raise IngestError(f"metadata file {meta_file} does not exist")
        meta, meta_records = read_metadata(meta_file, root)
        records += meta_records
        if meta is not None:
            meta = meta.rename(columns={c: f"meta_{c}" for c in _LABEL_COLUMNS})
            images, _, meta_columns = _join_metadata(
                images.assign(source_image_id=None), meta, "classify")
            images = images.drop(columns=["source_image_id"])
    for prop, (bin_col, _, _) in BINS.items():  # always: every sample gets the pixel slices
        images[bin_col] = bin_values(images[prop], prop)
    if "area_px" in images.columns and "size_bin" not in images.columns:
        images["size_bin"] = size_bin(images["area_px"])  # the object's size in its frame
    images = assign_classification_split(images, eval_fraction=eval_fraction,
                                         group_window_minutes=group_window_minutes,
                                         strata=strata, seed=seed)
    images = images.drop(columns=["source"])
    lead = [c for c in CLASSIFY_IMAGE_COLUMNS if c in images.columns]
    slices = [c for c in SLICE_COLUMNS if c in images.columns]
    rest = [c for c in images.columns if c not in lead and c not in slices]
    images = images[lead + slices + rest].sort_values("file_name", kind="stable")
    quarantine = quarantine_frame(records)
    return images.reset_index(drop=True), quarantine


def sample_stats(images: pd.DataFrame, quarantine: pd.DataFrame) -> dict[str, Any]:
    """Counts for a run's metadata: samples per class and split, quarantine reasons."""
    per_class = images["label_name"].value_counts().to_dict() if len(images) else {}
    split = images["split"].value_counts().to_dict() if len(images) else {}
    return {"images": int(len(images)), "quarantined": int(len(quarantine)),
            "reasons": reason_counts(quarantine),
            "per_class": {str(k): int(v) for k, v in per_class.items()},
            "split": {str(k): int(v) for k, v in split.items()},
            "groups": int(images["group_id"].nunique()) if len(images) else 0}
