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
* Every path is checked by ``locate`` before it is opened: one that would leave the landing
  folder (``..``, absolute, or a symlink pointing out) is ``path_escape``; a FIFO, device, socket
  or folder named like a file is ``not_regular_file`` (never opened, so a FIFO cannot block); a
  name that no file system call can take (NUL byte, a lone surrogate that stands for no byte,
  too long, a symlink loop) is ``bad_file_name``; a name that is not valid UTF-8 is read like any
  other (``preflight.data.filenames``: the tables keep it reversibly). Files are then read with ``read_regular`` (non-blocking open, re-checked
  on the open descriptor), so a file swapped for a FIFO after the check still cannot block.
* Nothing present is silently skipped (hidden dot-files aside): an image the COCO file does not
  list (``unlisted_image``), a symlinked folder under ``images/`` (``symlinked_folder``, not
  followed), a non-``.txt`` file under ``labels/`` (``unsupported_file``) are file-level rows;
  images sharing one label stem (``a.jpg`` + ``a.png``) are quarantined (``shared_label_stem``).
* An annotations file that cannot be used as a whole (``annotations.json`` / ``data.yaml`` /
  ``boxes_metadata.parquet`` unreadable, not JSON/YAML, wrong shape, outside the folder) stops
  the run with ``IngestError``: one line naming the file and the problem. Guessing (taking class
  ids as taxonomy ids, falling back to another format) could label every box wrongly.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd
import yaml

from preflight.data.errors import IngestError, QuarantineRecord, printable, where
from preflight.data.filenames import name_variants, unrepresentable
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
    found = resolve_inside(root, name)
    return found if isinstance(found, Path) else None


@dataclass(frozen=True)
class Refusal:
    """Why a named path is not opened: ``code`` (a quarantine reason code) and a phrase."""

    code: str
    why: str


def resolve_inside(root: Path, name: str, *, listed: bool = False) -> Path | Refusal:
    """``root/name`` resolved (symlinks followed) when it stays inside ``root``; else why not.
    A name written in a file (COCO, a manifest) may use Windows separators (``a\\b.jpg``); a
    ``listed`` name, read from the folder itself, is taken literally (on Linux ``\\`` and ``:``
    are ordinary characters of a file name)."""
    text = str(name)
    why = unrepresentable(text)  # bytes that are not UTF-8 are fine: they name a file on Linux
    if why is not None:
        return Refusal("bad_file_name", why)
    norm = text if listed else text.replace("\\", "/")
    windows = not listed and bool(PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive)
    if PurePosixPath(norm).is_absolute() or windows or ".." in PurePosixPath(norm).parts:
        return Refusal("path_escape", "the path leaves the landing folder; not read")
    try:
        resolved = (root / norm).resolve()
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        return Refusal("bad_file_name", "a symlink loop; not read")
    except (OSError, ValueError) as exc:
        return Refusal("bad_file_name", f"the name cannot be used ({_os_reason(exc)})")
    if not resolved.is_relative_to(root):
        return Refusal("path_escape", "resolves outside the landing folder (a symlink?); not read")
    return resolved


def locate(root: Path, name: str, missing_code: str = "missing_file", *,
           listed: bool = False) -> Path | Refusal:
    """``resolve_inside`` plus: it exists and is a regular file (checked with ``stat``, which
    never blocks, so a FIFO or device named like an image is refused without being opened)."""
    found = resolve_inside(root, name, listed=listed)
    if isinstance(found, Refusal):
        return found
    try:
        mode = os.stat(found).st_mode
    except FileNotFoundError:
        return Refusal(missing_code, "file not found")
    except (OSError, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.ENOTDIR:
            return Refusal(missing_code, "file not found")
        return Refusal("bad_file_name", f"cannot be examined ({_os_reason(exc)})")
    if not stat.S_ISREG(mode):
        return Refusal("not_regular_file", f"is a {_kind_of(mode)}, not a regular file; not read")
    return found


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file; ``OSError`` for anything else, without ever blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"is a {_kind_of(mode)}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def required_file(root: Path, name: str, what: str) -> Path:
    """A file the run cannot do without (annotations, metadata): located or ``IngestError``."""
    found = locate(root, name)
    if isinstance(found, Refusal):
        raise IngestError(f"{printable(name)}: {what} {found.why}")
    return found


def _load_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(read_regular(path).decode("utf-8-sig")), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _is_coco(data: Any) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data


def detect_format(landing: Path, fmt: str = "auto") -> tuple[str, Path | None, Any,
                                                                 list[QuarantineRecord]]:
    """``(format, coco_json_path, parsed_json, quarantine)``; ``fmt`` ``coco``/``yolo`` forces it.

    ``auto``: ``annotations.json`` (or another top-level ``*.json`` with ``images`` and
    ``annotations``) means COCO; otherwise ``images/`` means YOLO. An ``annotations.json`` that
    cannot be read, is not JSON or lacks the COCO keys stops the run (``IngestError``): falling
    back to another format would silently ignore the file the user meant.
    """
    root = landing.resolve()
    records: list[QuarantineRecord] = []
    if fmt == "yolo":
        if not (root / "images").is_dir():
            raise IngestError(f"{landing}: format 'yolo' asked for but there is no images/ folder")
        return "yolo", None, None, records
    if os.path.lexists(root / COCO_DEFAULT_NAME):
        path = required_file(root, COCO_DEFAULT_NAME, "the COCO annotations file")
        data, error = _load_json(path)
        if error is not None:
            raise IngestError(f"{COCO_DEFAULT_NAME}: cannot be read as JSON ({error})")
        _check_coco_shape(data, COCO_DEFAULT_NAME)
        return "coco", path, data, records
    for path in sorted(root.glob("*.json")):
        found = locate(root, path.name)
        if isinstance(found, Refusal):  # another JSON (a manifest, ...): only used if COCO
            records.append(QuarantineRecord(path.name, found.code, f"{printable(path.name)}: "
                                            f"{found.why}", level="file"))
            continue
        data, error = _load_json(found)
        if error is None and _is_coco(data):
            _check_coco_shape(data, path.name)
            return "coco", found, data, records
    if fmt == "coco":
        raise IngestError(f"{landing}: format 'coco' asked for but there is no "
                          f"{COCO_DEFAULT_NAME} (or other COCO *.json) in it")
    if not (root / "images").is_dir():
        raise IngestError(f"{landing}: neither a COCO {COCO_DEFAULT_NAME} nor a YOLO images/ "
                          f"folder found")
    return "yolo", None, None, records


def _check_coco_shape(data: Any, name: str) -> None:
    if not _is_coco(data) or not isinstance(data["images"], list) or not isinstance(
            data["annotations"], list):
        raise IngestError(f"{name}: a COCO file needs list-valued top-level keys 'images' and "
                          f"'annotations'")


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
    if not os.path.lexists(root / "data.yaml"):
        sample.notes.append("no data.yaml: label class ids taken as taxonomy ids")
        return _taxonomy_map(taxonomy.as_dict(), taxonomy), "taxonomy"
    path = required_file(root, "data.yaml", "the YOLO class-name file")
    try:
        names = (yaml.safe_load(read_regular(path).decode("utf-8-sig")) or {}).get("names")
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not names:
            raise ValueError("no 'names' list or mapping")
        cmap = _taxonomy_map({int(k): v for k, v in names.items()}, taxonomy)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError,
            yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)  # YAML errors span lines; say it in one
        detail = (f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
                  if mark is not None and getattr(exc, "problem", None)
                  else " ".join(str(exc).split()))
        raise IngestError(f"data.yaml: cannot read the class names ({detail})") from None
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
    """A YOLO landing folder (see the module docstring): its images, their boxes from the label
    files, and what cannot be used as quarantine rows."""
    root = landing.resolve()
    sample = RawSample("yolo")
    cmap, origin = _yolo_names(root, taxonomy, sample)
    by_stem = _yolo_images(root, sample)
    shared, bad_images = _shared_label_stems(by_stem)
    _yolo_labels(root, by_stem, shared, bad_images, cmap, origin, taxonomy, sample)
    if bad_images:
        sample.images = [im for im in sample.images if im.file_name not in bad_images]
        sample.quarantine.extend(bad_images.values())
    _attach_box_metadata(root, sample)
    return sample


def _yolo_images(root: Path, sample: RawSample) -> dict[str, list[str]]:
    """The image files under ``images/`` into ``sample.images`` (other file types and refused
    paths quarantined); returns their file names by label stem."""
    images_dir = root / "images"
    by_stem: dict[str, list[str]] = {}
    for p in _listing(images_dir, root, sample):
        file_name = p.relative_to(images_dir).as_posix()
        source = f"images/{file_name}"
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            sample.quarantine.append(QuarantineRecord(
                source, "unsupported_file",
                f"{source}: not an image file type ({sorted(IMAGE_EXTENSIONS)})", level="file"))
            continue
        found = locate(root, source, listed=True)
        if isinstance(found, Refusal):
            sample.quarantine.append(QuarantineRecord(
                source, found.code, f"{source}: {found.why}", level="image"))
            continue
        by_stem.setdefault(str(PurePosixPath(file_name).with_suffix("")), []).append(file_name)
        sample.images.append(ImageEntry(file_name, source, found))
    return by_stem


def _shared_label_stems(by_stem: dict[str, list[str]]
                        ) -> tuple[dict[str, list[str]], dict[str, QuarantineRecord]]:
    """The label stems claimed by several images (``a.jpg`` + ``a.png``) and a quarantine row
    for each of those images: which image ``labels/<stem>.txt`` describes is unknowable."""
    shared = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    bad_images: dict[str, QuarantineRecord] = {}
    for stem, names in shared.items():
        for name in names:
            others = ", ".join(f"images/{n}" for n in names if n != name)
            bad_images[name] = QuarantineRecord(
                f"images/{name}", "shared_label_stem",
                f"images/{name}: shares the label stem '{stem}' with {others}; rename one so "
                f"each image has its own labels/{stem}.txt", level="image")
    return shared, bad_images


def _label_stem(stem: str, by_stem: dict[str, list[str]], label_stems: set[str]) -> str:
    """A label file's stem, or the image stem it spells differently (NFD / NFC, CP1252 bytes)
    when that image has no label file of its own (then added to ``label_stems``)."""
    if stem not in by_stem:
        for v in name_variants(stem):
            if v in by_stem and v not in label_stems:
                label_stems.add(v)
                return v
    return stem


def _label_file_problem(lp: Path, source: str, stem: str, by_stem: dict[str, list[str]],
                        shared: dict[str, list[str]]) -> QuarantineRecord | None:
    """The file-level quarantine row of a label file that describes no single image (not a
    ``.txt`` file, a stem shared by several images, no image), else None."""
    if lp.suffix.lower() != ".txt":
        return QuarantineRecord(
            source, "unsupported_file", f"{source}: not a .txt label file", level="file")
    if stem in shared:
        return QuarantineRecord(
            source, "shared_label_stem", f"{source}: claimed by {len(shared[stem])} images "
            f"({', '.join(shared[stem])}); not used", level="file")
    if stem not in by_stem:
        return QuarantineRecord(
            source, "orphan_label", f"{source}: label file has no image under images/",
            level="file")
    return None


def _read_label(root: Path, source: str, file_name: str) -> str | QuarantineRecord:
    """The text of the label file ``source`` (UTF-8, optional BOM), or the image-level
    quarantine row of ``file_name`` when it cannot be read."""
    found = locate(root, source, listed=True)
    try:
        if isinstance(found, Refusal):
            raise OSError(found.why)
        return read_regular(found).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        code = found.code if isinstance(found, Refusal) and found.code in (
            "path_escape", "not_regular_file") else "unreadable_label"
        return QuarantineRecord(
            f"images/{file_name}", code,
            f"images/{file_name}: its label file {source} cannot be read "
            f"({_os_reason(exc) if isinstance(exc, OSError) else exc})", level="image")


def _yolo_labels(root: Path, by_stem: dict[str, list[str]], shared: dict[str, list[str]],
                 bad_images: dict[str, QuarantineRecord], cmap: dict, origin: str, taxonomy: Taxonomy,
                 sample: RawSample) -> None:
    """Each label file under ``labels/``: its boxes into ``sample``, or a file-level quarantine
    row (:func:`_label_file_problem`), or its image into ``bad_images`` (unreadable)."""
    labels_dir = root / "labels"
    label_files = _listing(labels_dir, root, sample)
    label_stems = {lp.relative_to(labels_dir).with_suffix("").as_posix() for lp in label_files}
    for lp in label_files:
        stem = _label_stem(lp.relative_to(labels_dir).with_suffix("").as_posix(), by_stem,
                           label_stems)
        source = f"labels/{lp.relative_to(labels_dir).as_posix()}"
        problem = _label_file_problem(lp, source, stem, by_stem, shared)
        if problem is not None:
            sample.quarantine.append(problem)
            continue
        file_name = by_stem[stem][0]
        text = _read_label(root, source, file_name)
        if isinstance(text, QuarantineRecord):
            bad_images[file_name] = text
            continue
        _yolo_lines(text, source, file_name, cmap, origin, taxonomy, sample)


def _listing(folder: Path, root: Path, sample: RawSample) -> list[Path]:
    """Every non-hidden file under ``folder``, sorted. Symlinked sub-folders are not followed
    (they could lead anywhere, or loop); each is reported as a file-level row."""
    out: list[Path] = []
    if not folder.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if (here / d).is_symlink() and not d.startswith("."):
                source = printable(rel(here / d, root))
                sample.quarantine.append(QuarantineRecord(
                    source, "symlinked_folder", f"{source}: a symlinked folder; its files are "
                    f"not read (copy them into the landing folder)", level="file"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [here / f for f in filenames if not f.startswith(".")]
    return sorted(out)


def _attach_box_metadata(root: Path, sample: RawSample) -> None:
    """truncated/occluded for YOLO boxes from ``boxes_metadata.parquet`` (file_name, box_index).

    ``box_index`` is the 0-based line number of the box in its label file.
    """
    if not os.path.lexists(root / BOX_METADATA_NAME) or not sample.boxes:
        return
    path = required_file(root, BOX_METADATA_NAME, "the box metadata table")
    try:
        meta = pd.read_parquet(path)
        meta = meta.drop_duplicates(["file_name", "box_index"]).set_index(
            ["file_name", "box_index"])
    except Exception as exc:  # noqa: BLE001 - any unreadable table stops the run, in one line
        raise IngestError(f"{BOX_METADATA_NAME}: cannot be read as a table with file_name and "
                          f"box_index columns ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]})") from None
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
            raise IngestError(f"{src}: cannot be read as JSON ({error})")
    _check_coco_shape(data, src)
    cmap, origin = _coco_categories(data, src, taxonomy, sample)
    known: dict[Any, str | None] = {}  # COCO image id -> file_name (None: image quarantined)
    listed: set[Path] = set()  # every file an images entry names, used or quarantined
    for idx, im in enumerate(data["images"]):
        _coco_image(root, src, idx, im, known, listed, sample)
    for idx, ann in enumerate(data["annotations"]):
        _coco_annotation(src, idx, ann, known, cmap, origin, taxonomy, sample)
    _report_unlisted(root, src, listed, sample)
    return sample


def _report_unlisted(root: Path, src: str, listed: set[Path], sample: RawSample) -> None:
    """Image files under ``images/`` (or beside the COCO file) that no images entry names."""
    top = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")
           and p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()]
    for p in top + _listing(root / "images", root, sample):
        source = printable(rel(p, root))
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            sample.quarantine.append(QuarantineRecord(
                source, "unsupported_file",
                f"{source}: not an image file type ({sorted(IMAGE_EXTENSIONS)})", level="file"))
        elif p not in listed and resolve_inside(root, rel(p, root), listed=True) not in listed:
            sample.quarantine.append(QuarantineRecord(
                source, "unlisted_image", f"{source}: not listed in {src} 'images'; not used "
                f"(add it with its annotations, or remove it)", level="file"))


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


def _coco_image(root: Path, src: str, idx: int, im: Any, known: dict, listed: set[Path],
                sample: RawSample) -> None:
    if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
        missing = [k for k in ("id", "file_name") if not isinstance(im, dict) or k not in im]
        sample.quarantine.append(QuarantineRecord(
            src, "coco_missing_key", f"{src} images[{idx}]: missing key(s) {missing}",
            level="image"))
        return
    image_id, name = im["id"], str(im["file_name"])
    at = f"{src} image {image_id} ({name})"
    if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
        sample.quarantine.append(QuarantineRecord(
            src, "coco_bad_value", f"{at}: image id must be an integer or string", level="image"))
        return
    if image_id in known:
        sample.quarantine.append(QuarantineRecord(
            src, "duplicate_coco_id", f"{at}: image id {image_id} used twice; kept the first",
            level="image"))
        return
    known[image_id] = None
    found = _find_coco_file(root, name)
    if isinstance(found, Refusal):
        if found.code in ("missing_image", "not_regular_file"):
            listed |= {p for p in _candidates(root, name) if isinstance(p, Path)}
        why = ("file not found under images/ or the landing folder"
               if found.code == "missing_image" else found.why)
        sample.quarantine.append(QuarantineRecord(name, found.code, f"{at}: {why}",
                                                  level="image"))
        return
    path = found
    listed.add(path)
    listed.update(p for p in _candidates(root, name) if isinstance(p, Path))
    try:
        width = int(im["width"]) if im.get("width") is not None else None
        height = int(im["height"]) if im.get("height") is not None else None
    except (TypeError, ValueError, OverflowError):
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


def _candidates(root: Path, name: str) -> list[Path | Refusal]:
    """Where a COCO ``file_name`` may live: under ``images/``, then beside the COCO file; each
    also in its other spellings on disk (:func:`name_variants`: the other Unicode normal form,
    a legacy 8-bit encoding's bytes)."""
    forms = name_variants(name) if unrepresentable(name) is None else [name]
    return [resolve_inside(root, prefix + form) for prefix in ("images/", "") for form in forms]


def _find_coco_file(root: Path, name: str) -> Path | Refusal:
    """The regular file a COCO ``file_name`` names, inside the landing folder; else why not.
    A name that escapes in any of its readings is refused, whatever the others find."""
    candidates = _candidates(root, name)
    for c in candidates:
        if isinstance(c, Refusal):
            return c
    refusal: Refusal | None = None
    for c in candidates:
        found = locate(root, rel(c, root), missing_code="missing_image")  # type: ignore[arg-type]
        if isinstance(found, Path):
            return found
        if found.code != "missing_image" and refusal is None:
            refusal = found
    return refusal or Refusal("missing_image", "file not found")


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
