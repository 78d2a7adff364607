"""Readers for a landing folder: YOLO directories and COCO instances JSON.

The readers only parse and map classes; they never decode pixels (``ingest`` does that once per
image). What cannot be used is returned as ``QuarantineRecord``s, never raised:

* YOLO: ``images/**/<stem>.<ext>`` with ``labels/**/<stem>.txt`` (``class cx cy w h``, normalised)
  and ``data.yaml`` ``names`` mapping the file's class ids to class *names*, which are mapped to
  the operational taxonomy by name. Without ``data.yaml`` the ids are taken as taxonomy ids.
  Label files are decoded as UTF-8 with an optional BOM and split on any line ending (CRLF, CR),
  so Windows-edited files read normally. **An image without a label file is a valid background
  frame with zero boxes.** A label file without an image is quarantined (``orphan_label``).
* COCO: ``images[id, file_name, width?, height?]``, ``annotations[id?, image_id, category_id,
  bbox[x,y,w,h], area?, iscrowd?, truncated?, occluded?]``, ``categories[id, name]`` (names mapped
  to the taxonomy; without ``categories`` the ids are taken as taxonomy ids). ``file_name`` is
  looked up under ``images/`` and then under the landing folder itself.
* Any path that would leave the landing folder (``..``, absolute, or a symlink pointing out) is
  quarantined as ``path_escape`` and never opened.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd
import yaml

from preflight.data.errors import IngestError, QuarantineRecord, where
from preflight.taxonomy import Taxonomy

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
COCO_DEFAULT_NAME = "annotations.json"
BOX_METADATA_NAME = "boxes_metadata.parquet"


@dataclass
class ImageEntry:
    file_name: str  # relative to images/ when the file lies there, else to the landing folder
    source: str  # relative to the landing folder, for messages
    path: Path  # resolved, inside the landing folder
    source_image_id: Any = None  # the COCO image id
    declared_width: int | None = None
    declared_height: int | None = None


@dataclass
class BoxEntry:
    file_name: str
    source: str
    line: int | None  # 1-based line in a YOLO label file
    source_box_id: Any  # COCO annotation id (or index)
    class_id: int
    class_name: str
    coords: tuple[float, float, float, float]  # YOLO: normalised cx cy w h; COCO: pixel x y w h
    normalized: bool
    area: float | None = None
    iscrowd: Any = 0
    truncated: Any = None
    occluded: Any = None


@dataclass
class RawSample:
    format: str
    images: list[ImageEntry] = field(default_factory=list)
    boxes: list[BoxEntry] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def safe_path(root: Path, name: str) -> Path | None:
    """``root/name`` resolved, or None when ``name`` is absolute or resolves outside ``root``."""
    norm = str(name).replace("\\", "/")
    if (PurePosixPath(norm).is_absolute() or PureWindowsPath(str(name)).is_absolute()
            or PureWindowsPath(str(name)).drive or ".." in PurePosixPath(norm).parts):
        return None
    resolved = (root / norm).resolve()
    return resolved if resolved.is_relative_to(root) else None


def _load_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig")), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _is_coco(data: Any) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data


def detect_format(landing: Path, fmt: str = "auto") -> tuple[str, Path | None, Any,
                                                                 list[QuarantineRecord]]:
    """``(format, coco_json_path, parsed_json, quarantine)``; ``fmt`` ``coco``/``yolo`` forces it.

    ``auto``: ``annotations.json`` (or another top-level ``*.json`` with ``images`` and
    ``annotations``) means COCO; otherwise ``labels/`` or ``images/`` means YOLO. An
    ``annotations.json`` that does not parse is quarantined; YOLO is used when ``labels/`` exists.
    """
    root = landing.resolve()
    records: list[QuarantineRecord] = []
    if fmt == "yolo":
        if not (root / "images").is_dir():
            raise IngestError(f"{landing}: format 'yolo' asked for but there is no images/ folder")
        return "yolo", None, None, records
    default = root / COCO_DEFAULT_NAME
    candidates = ([default] if default.is_file() else []) + [
        p for p in sorted(root.glob("*.json")) if p.name != COCO_DEFAULT_NAME]
    first_bad: tuple[Path, str | None] | None = None
    for path in candidates:
        data, error = _load_json(path)
        if error is None and _is_coco(data):
            return "coco", path, data, records
        if first_bad is None and (path == default or fmt == "coco"):
            first_bad = (path, error)
    if first_bad is not None:  # quarantined here; the COCO reader then gets no file
        path, error = first_bad
        if error is not None:
            records.append(QuarantineRecord(
                rel(path, root), "invalid_json",
                f"{rel(path, root)}: cannot be read as JSON ({error})", level="file"))
        else:
            records.append(QuarantineRecord(
                rel(path, root), "coco_missing_key",
                f"{rel(path, root)}: COCO file needs top-level keys 'images' and 'annotations'",
                level="file"))
    if fmt == "coco" or (first_bad is not None and not (root / "labels").is_dir()):
        if first_bad is None:
            raise IngestError(f"{landing}: format 'coco' asked for but there is no "
                              f"{COCO_DEFAULT_NAME} (or other COCO *.json) in it")
        return "coco", None, None, records
    if not (root / "images").is_dir():
        raise IngestError(f"{landing}: neither a COCO {COCO_DEFAULT_NAME} nor a YOLO images/ "
                          f"folder found")
    return "yolo", None, None, records


def _taxonomy_map(names: dict[int, str], taxonomy: Taxonomy) -> dict[int, tuple[int | None, str]]:
    return {int(k): ((taxonomy.id_of(v) if v in taxonomy.names else None), str(v))
            for k, v in names.items()}


def _class_record(source: str, line: int | None, ann: Any, raw_id: Any,
                  cmap: dict[int, tuple[int | None, str]], taxonomy: Taxonomy, origin: str,
                  level: str = "box") -> QuarantineRecord | tuple[int, str]:
    """The taxonomy (id, name) of a file class id, or the quarantine record explaining why not."""
    at = where(source, line, ann)
    try:
        as_float = float(raw_id)
    except (TypeError, ValueError):
        as_float = math.nan
    if not math.isfinite(as_float) or as_float != int(as_float):
        return QuarantineRecord(source, "bad_class_id",
                                f"{at}: class id {raw_id!r} is not an integer", line=line,
                                level=level)
    k = int(as_float)
    if k not in cmap:
        ids = sorted(cmap)
        span = f"{ids[0]}-{ids[-1]}" if ids else "none"
        scope = "taxonomy" if origin == "taxonomy" else f"{origin} names"
        return QuarantineRecord(source, "unknown_class_id",
                                f"{at}: class id {k} not in {scope} ({span})", line=line,
                                level=level)
    tax_id, name = cmap[k]
    if tax_id is None:
        return QuarantineRecord(source, "unknown_class",
                                f"{at}: class {name!r} (id {k} in {origin}) is not in the "
                                f"taxonomy {list(taxonomy.names)}", line=line, level=level)
    return tax_id, taxonomy.names[tax_id]


# --------------------------------------------------------------------------------------- YOLO
def _yolo_names(root: Path, taxonomy: Taxonomy, sample: RawSample) -> tuple[dict, str]:
    path = root / "data.yaml"
    if not path.is_file():
        sample.notes.append("no data.yaml: label class ids taken as taxonomy ids")
        return _taxonomy_map(taxonomy.as_dict(), taxonomy), "taxonomy"
    try:
        names = (yaml.safe_load(path.read_bytes().decode("utf-8-sig")) or {}).get("names")
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not names:
            raise ValueError("no 'names' list or mapping")
        cmap = _taxonomy_map({int(k): v for k, v in names.items()}, taxonomy)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError,
            yaml.YAMLError) as exc:
        sample.quarantine.append(QuarantineRecord(
            "data.yaml", "invalid_yaml",
            f"data.yaml: cannot read class names ({exc}); label class ids taken as taxonomy ids",
            level="file"))
        return _taxonomy_map(taxonomy.as_dict(), taxonomy), "taxonomy"
    same = all(t == k for k, (t, _) in cmap.items()) and len(cmap) == len(taxonomy)
    return cmap, "taxonomy" if same else "data.yaml"


def _yolo_lines(text: str, source: str, file_name: str, cmap: dict, origin: str,
                taxonomy: Taxonomy, sample: RawSample) -> None:
    for number, raw in enumerate(text.splitlines(), start=1):
        parts = raw.replace("\x00", "").split()
        if not parts:
            continue
        at = f"{source} line {number}"
        if len(parts) != 5:
            sample.quarantine.append(QuarantineRecord(
                source, "wrong_column_count",
                f"{at}: expected 5 values 'class cx cy w h', got {len(parts)}", line=number))
            continue
        klass = _class_record(source, number, None, parts[0], cmap, taxonomy, origin)
        if isinstance(klass, QuarantineRecord):
            sample.quarantine.append(klass)
            continue
        try:
            coords = tuple(float(v) for v in parts[1:])
        except ValueError:
            sample.quarantine.append(QuarantineRecord(
                source, "bad_number", f"{at}: coordinates {parts[1:]} are not all numbers",
                line=number))
            continue
        if not all(math.isfinite(v) for v in coords):
            sample.quarantine.append(QuarantineRecord(
                source, "nan_coordinate", f"{at}: coordinates {parts[1:]} contain NaN/inf",
                line=number))
            continue
        sample.boxes.append(BoxEntry(file_name, source, number, None, klass[0], klass[1],
                                     coords, normalized=True))  # type: ignore[arg-type]


def read_yolo(landing: Path, taxonomy: Taxonomy) -> RawSample:
    root = landing.resolve()
    sample = RawSample("yolo")
    images_dir, labels_dir = root / "images", root / "labels"
    cmap, origin = _yolo_names(root, taxonomy, sample)
    by_stem: dict[str, str] = {}
    files = sorted(p for p in images_dir.rglob("*") if not p.is_dir()) if images_dir.is_dir() else []
    for p in files:
        file_name = p.relative_to(images_dir).as_posix()
        source = f"images/{file_name}"
        if p.name.startswith("."):
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            sample.quarantine.append(QuarantineRecord(
                source, "unsupported_file",
                f"{source}: not an image file type ({sorted(IMAGE_EXTENSIONS)})", level="file"))
            continue
        resolved = safe_path(root, f"images/{file_name}")
        if resolved is None:
            sample.quarantine.append(QuarantineRecord(
                source, "path_escape", f"{source}: resolves outside the landing folder; not read",
                level="image"))
            continue
        stem = str(PurePosixPath(file_name).with_suffix(""))
        if stem in by_stem:
            sample.notes.append(f"{source}: shares label stem with images/{by_stem[stem]}")
        by_stem.setdefault(stem, file_name)
        sample.images.append(ImageEntry(file_name, source, resolved))
    bad_images: dict[str, QuarantineRecord] = {}
    labels = sorted(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else []
    for lp in labels:
        stem = lp.relative_to(labels_dir).with_suffix("").as_posix()
        source = f"labels/{lp.relative_to(labels_dir).as_posix()}"
        if stem not in by_stem:
            sample.quarantine.append(QuarantineRecord(
                source, "orphan_label", f"{source}: label file has no image under images/",
                level="file"))
            continue
        file_name = by_stem[stem]
        resolved = safe_path(root, source)
        try:
            if resolved is None:
                raise PermissionError("resolves outside the landing folder; not read")
            text = resolved.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            code = "path_escape" if resolved is None else "unreadable_label"
            bad_images[file_name] = QuarantineRecord(
                f"images/{file_name}", code,
                f"images/{file_name}: its label file {source} cannot be read ({exc})",
                level="image")
            continue
        _yolo_lines(text, source, file_name, cmap, origin, taxonomy, sample)
    if bad_images:
        sample.images = [im for im in sample.images if im.file_name not in bad_images]
        sample.quarantine.extend(bad_images.values())
    _attach_box_metadata(root, sample)
    return sample


def _attach_box_metadata(root: Path, sample: RawSample) -> None:
    """truncated/occluded for YOLO boxes from ``boxes_metadata.parquet`` (file_name, box_index).

    ``box_index`` is the 0-based line number of the box in its label file.
    """
    path = root / BOX_METADATA_NAME
    if not path.is_file() or not sample.boxes:
        return
    try:
        meta = pd.read_parquet(path)
        meta = meta.drop_duplicates(["file_name", "box_index"]).set_index(
            ["file_name", "box_index"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined
        sample.quarantine.append(QuarantineRecord(
            BOX_METADATA_NAME, "invalid_metadata",
            f"{BOX_METADATA_NAME}: cannot be read ({exc}); truncated/occluded left empty",
            level="file"))
        return
    for b in sample.boxes:
        for key in ((b.file_name, int(b.line) - 1), (f"images/{b.file_name}", int(b.line) - 1)):
            if key in meta.index:
                row = meta.loc[key]
                b.truncated = row.get("truncated", b.truncated)
                b.occluded = row.get("occluded", b.occluded)
                break


# --------------------------------------------------------------------------------------- COCO
def read_coco(landing: Path, taxonomy: Taxonomy, json_path: Path | None,
              data: Any = None) -> RawSample:
    root = landing.resolve()
    sample = RawSample("coco")
    if json_path is None:
        return sample
    src = rel(json_path, root)
    if data is None:
        data, error = _load_json(json_path)
        if error is not None:
            sample.quarantine.append(QuarantineRecord(
                src, "invalid_json", f"{src}: cannot be read as JSON ({error})", level="file"))
            return sample
    if not _is_coco(data) or not isinstance(data["images"], list) or not isinstance(
            data["annotations"], list):
        sample.quarantine.append(QuarantineRecord(
            src, "coco_missing_key",
            f"{src}: COCO file needs list-valued top-level keys 'images' and 'annotations'",
            level="file"))
        return sample
    cmap, origin = _coco_categories(data, src, taxonomy, sample)
    known: dict[Any, str | None] = {}  # COCO image id -> file_name (None: image quarantined)
    for idx, im in enumerate(data["images"]):
        _coco_image(root, src, idx, im, known, sample)
    for idx, ann in enumerate(data["annotations"]):
        _coco_annotation(src, idx, ann, known, cmap, origin, taxonomy, sample)
    return sample


def _coco_categories(data: dict, src: str, taxonomy: Taxonomy, sample: RawSample):
    cats = data.get("categories")
    if not isinstance(cats, list):
        sample.notes.append(f"{src}: no 'categories'; category ids taken as taxonomy ids")
        return _taxonomy_map(taxonomy.as_dict(), taxonomy), "taxonomy"
    names: dict[int, str] = {}
    for i, cat in enumerate(cats):
        try:
            names[int(cat["id"])] = str(cat["name"])
        except (KeyError, TypeError, ValueError):
            sample.quarantine.append(QuarantineRecord(
                src, "coco_missing_key", f"{src} categories[{i}]: needs an integer 'id' and a "
                f"'name'; its annotations are quarantined", level="file"))
    return _taxonomy_map(names, taxonomy), "categories"


def _coco_image(root: Path, src: str, idx: int, im: Any, known: dict, sample: RawSample) -> None:
    if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
        missing = [k for k in ("id", "file_name") if not isinstance(im, dict) or k not in im]
        sample.quarantine.append(QuarantineRecord(
            src, "coco_missing_key", f"{src} images[{idx}]: missing key(s) {missing}",
            level="image"))
        return
    image_id, name = im["id"], str(im["file_name"])
    at = f"{src} image {image_id} ({name})"
    if not isinstance(image_id, (int, str)):
        sample.quarantine.append(QuarantineRecord(
            src, "coco_bad_value", f"{at}: image id must be an integer or string", level="image"))
        return
    if image_id in known:
        sample.quarantine.append(QuarantineRecord(
            src, "duplicate_coco_id", f"{at}: image id {image_id} used twice; kept the first",
            level="image"))
        return
    known[image_id] = None
    paths = [safe_path(root, f"images/{name}"), safe_path(root, name)]
    if any(p is None for p in paths):
        sample.quarantine.append(QuarantineRecord(
            name, "path_escape", f"{at}: file_name leaves the landing folder; not read",
            level="image"))
        return
    path = next((p for p in paths if p is not None and p.is_file()), None)
    if path is None:
        sample.quarantine.append(QuarantineRecord(
            name, "missing_image", f"{at}: file not found under images/ or the landing folder",
            level="image"))
        return
    try:
        width = int(im["width"]) if im.get("width") is not None else None
        height = int(im["height"]) if im.get("height") is not None else None
    except (TypeError, ValueError):
        width = height = None
        sample.notes.append(f"{at}: width/height not integers; using the decoded size")
    file_name = rel(path, root / "images") if path.is_relative_to(root / "images") else rel(
        path, root)
    if file_name in known.values():
        sample.quarantine.append(QuarantineRecord(
            name, "duplicate_coco_file", f"{at}: the same file is listed under another image "
            f"id; kept the first", level="image"))
        return
    known[image_id] = file_name
    sample.images.append(ImageEntry(file_name, rel(path, root), path, image_id, width, height))


def _coco_annotation(src: str, idx: int, ann: Any, known: dict, cmap: dict, origin: str,
                     taxonomy: Taxonomy, sample: RawSample) -> None:
    ann_id = ann.get("id", f"#{idx}") if isinstance(ann, dict) else f"#{idx}"
    at = f"{src} annotation {ann_id}"

    def bad(code: str, msg: str) -> None:
        sample.quarantine.append(QuarantineRecord(src, code, f"{at}: {msg}"))

    if not isinstance(ann, dict):
        return bad("coco_bad_value", "is not an object")
    missing = [k for k in ("image_id", "category_id", "bbox") if k not in ann]
    if missing:
        return bad("coco_missing_key", f"missing key(s) {missing}")
    if not isinstance(ann["image_id"], (int, str)) or ann["image_id"] not in known:
        return bad("unknown_image_id", f"image_id {ann['image_id']!r} is not in 'images'")
    file_name = known[ann["image_id"]]
    if file_name is None:
        return bad("image_quarantined", f"its image {ann['image_id']!r} was quarantined")
    klass = _class_record(src, None, ann_id, ann["category_id"], cmap, taxonomy, origin)
    if isinstance(klass, QuarantineRecord):
        sample.quarantine.append(klass)
        return None
    bbox = ann["bbox"]
    try:
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError
        coords = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        return bad("coco_bad_value", f"bbox {bbox!r} is not four numbers [x, y, w, h]")
    if not all(math.isfinite(v) for v in coords):
        return bad("nan_coordinate", f"bbox {bbox!r} contains NaN/inf")
    area = ann.get("area")
    try:
        area = float(area) if area is not None else None
    except (TypeError, ValueError):
        area = None
    sample.boxes.append(BoxEntry(
        file_name, src, None, ann_id, klass[0], klass[1], coords, normalized=False, area=area,
        iscrowd=ann.get("iscrowd", 0), truncated=ann.get("truncated"),
        occluded=ann.get("occluded")))
    return None
