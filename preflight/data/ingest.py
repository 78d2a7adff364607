"""Ingest a landing folder into the images, boxes and quarantine tables (see docs/CONTRACTS.md).

``ingest`` reads YOLO or COCO labels (``formats``), hashes and decodes each image once
(``properties``), joins the optional metadata table, derives slice bins from the pixels for the
slices the metadata lacks, groups near-duplicate frames and splits the sample into a fine-tuning
pool and a held-out evaluation set.

Policy decisions (the lead's pipeline relies on them):

* Images whose bytes cannot be read or whose path leaves the landing folder are quarantined here
  (``level == "image"``); they have no content id. Images that are read but do not decode stay in
  the images table with ``decode_ok = False`` (and ``decode_error`` / ``decode_detail``) so the
  label validation — the authority on "every image decodes" — quarantines them with their boxes.
* Images with no label file / no COCO annotations are background frames with zero boxes.
* Metadata: a value that does not parse (a ``captured_at`` that is not a date, a word in a
  column whose other values are numbers) or an image with several metadata rows that disagree
  quarantines that image (``bad_metadata_value`` / ``conflicting_metadata``) with its boxes;
  identical duplicate rows count once. A metadata file that cannot be read at all stops the run
  (``IngestError``, one line naming the file).
* Split: near-duplicate frames form a *group* (same ``camera`` and ``captured_at`` chained within
  ``group_window_minutes``; without a usable ``captured_at``, frames whose perceptual hashes
  differ in at most ``near_duplicate_bits`` of 64 bits, chained: consecutive frames of a clip). Groups are assigned whole, never straddling the split. Within
  each stratum (the values of ``strata`` columns present, e.g. site x camera; default the
  pixel brightness bin) groups
  are ordered by ``sha1(seed:group_id)`` and taken into ``eval`` while that brings the stratum's
  eval count closer to its target (``eval_fraction`` x stratum size, plus the rounding carried
  over from the previous stratum in sorted order). Then every class found in at least two
  groups is made to appear on both sides: a class with no ``eval`` group gets its first group
  (in the same hash order) moved to ``eval``, one with no ``finetune`` group one moved back,
  unless the move would take the last group of another class off its side (a rare class --
  e.g. one with no analog in pre-training -- is then both measured and learned). Nothing
  depends on file order, so re-ingesting the same data, in any order, gives the same split.
  Undecodable images get no split.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from preflight.data.errors import (
    IngestError,
    QuarantineRecord,
    printable,
    quarantine_frame,
    reason_counts,
    where,
)
from preflight.data.filenames import stored_path
from preflight.data.formats import (
    BoxEntry,
    ImageEntry,
    Refusal,
    detect_format,
    locate,
    read_coco,
    read_regular,
    read_yolo,
    rel,
    required_file,
)
from preflight.data.properties import (
    BINS,
    PROPERTY_COLUMNS,
    bin_values,
    decode,
    perceptual_hash,
    pixel_properties,
    size_bin,
)
from preflight.taxonomy import Taxonomy

IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id", "file_name", "source", "path", "width", "height", "file_size", "decode_ok",
    "decode_error", "decode_detail", "source_image_id", "split", "group_id", "stratum",
)
BOX_COLUMNS: tuple[str, ...] = (
    "image_id", "box_id", "file_name", "class_id", "class_name", "x", "y", "w", "h", "area",
    "iscrowd", "truncated", "occluded", "size_bin", "source", "line", "source_box_id",
)
SLICE_COLUMNS: tuple[str, ...] = (
    "site", "camera", "shift", "week", "lighting", "blur", "lens", "captured_at")
#: Strata when none are given: the pixel brightness bin (every sample has it).
DEFAULT_STRATA: tuple[str, ...] = ()
#: Perceptual-hash bits two frames may differ in and still be near-duplicates (64-bit phash).
NEAR_DUPLICATE_BITS = 8
_RESERVED = (set(IMAGE_COLUMNS) | set(PROPERTY_COLUMNS) | {b[0] for b in BINS.values()}
             | {"phash"})


@dataclass
class IngestResult:
    images: pd.DataFrame
    boxes: pd.DataFrame
    quarantine: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def ingest(landing_dir: str | Path, *, taxonomy: Taxonomy, fmt: str = "auto",
           metadata_path: str | Path | None = None, eval_fraction: float = 0.3,
           group_window_minutes: float = 10.0, strata: tuple[str, ...] = DEFAULT_STRATA,
           seed: int = 0, progress: bool = False,
           near_duplicate_bits: int = NEAR_DUPLICATE_BITS) -> IngestResult:
    """Read a landing folder into ``IngestResult(images, boxes, quarantine, stats)``."""
    landing = Path(landing_dir)
    if not landing.is_dir():
        raise IngestError(f"landing folder {landing} does not exist or is not a folder")
    if fmt not in ("auto", "yolo", "coco"):
        raise IngestError(f"fmt must be auto, yolo or coco, got {fmt!r}")
    if not 0.0 < eval_fraction < 1.0:
        raise IngestError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    kind, json_path, data, records = detect_format(landing, fmt)
    raw = (read_coco(landing, taxonomy, json_path, data) if kind == "coco"
           else read_yolo(landing, taxonomy))
    records = records + raw.quarantine
    images, image_records, shown = _load_images(raw.images, progress)
    boxes, box_records = _build_boxes(raw.boxes, images, shown)
    records += image_records + box_records

    meta_stats: dict[str, Any] = {"path": None}
    meta_file = metadata_file(metadata_path, landing)
    meta_columns: set[str] = set()
    if meta_file is not None:
        meta, meta_records = read_metadata(meta_file, landing)
        records += meta_records
        if meta is not None:
            meta, problems = metadata_problems(meta, rel(meta_file.resolve(), landing.resolve()))
            images, meta_stats, meta_columns = _join_metadata(images, meta, kind)
            meta_stats["path"] = str(meta_file)
            images, boxes, meta_records = _quarantine_metadata_problems(images, boxes, problems,
                                                                        kind)
            records += meta_records
    derived = []
    for prop, (bin_col, _, _) in BINS.items():  # always: every sample gets the pixel slices
        images[bin_col] = bin_values(images[prop], prop)
        derived.append(bin_col)

    images["group_id"] = assign_groups(images, group_window_minutes, near_duplicate_bits)
    used_strata = [c for c in strata if c in images.columns] or [
        c for c in ("brightness_bin",) if c in images.columns]
    images["stratum"] = stratum_keys(images, used_strata)
    images["split"] = assign_split(images, eval_fraction=eval_fraction, seed=seed,
                                   boxes=boxes)

    quarantine = quarantine_frame(records)
    stats = _stats(kind, landing, images, boxes, quarantine, raw.notes)
    stats.update(metadata=meta_stats, derived_slices=derived, strata_columns=used_strata,
                 eval_fraction=eval_fraction, group_window_minutes=group_window_minutes)
    return IngestResult(images, boxes, quarantine, stats)


def content_id(data: bytes) -> str:
    """The stable image id: sha1 of the file bytes, first 16 hex characters."""
    return hashlib.sha1(data).hexdigest()[:16]


def _load_images(entries: list[ImageEntry], progress: bool
                 ) -> tuple[pd.DataFrame, list[QuarantineRecord], dict[str, str]]:
    """The images table, its quarantine rows, and each kept image's raw name -> table name."""
    rows: list[dict[str, Any]] = []
    records: list[QuarantineRecord] = []
    shown: dict[str, str] = {}  # printable file name -> the raw name it stands for
    kept: dict[str, str] = {}  # raw name -> printable file name, of the images in the table
    for entry in tqdm(sorted(entries, key=lambda e: e.file_name), desc="ingest images",
                      unit="img", disable=not progress):
        file_name = printable(entry.file_name)  # tables hold UTF-8; `path` keeps the raw bytes
        if shown.setdefault(file_name, entry.file_name) != entry.file_name:
            records.append(QuarantineRecord(
                entry.source, "bad_file_name",
                f"{entry.source}: its escaped name {file_name} is also the literal name of "
                f"another file; rename one of them", level="image"))
            continue
        try:
            data = read_regular(entry.path)
        except OSError as exc:
            records.append(QuarantineRecord(entry.source, "unreadable_file",
                                            f"{entry.source}: cannot be read "
                                            f"({exc.strerror or exc})", level="image"))
            continue
        image_id = content_id(data)
        dec = decode(data)
        row: dict[str, Any] = {
            "image_id": image_id, "file_name": file_name, "source": printable(entry.source),
            "path": stored_path(entry.path),
            "width": None, "height": None, "file_size": len(data),
            "decode_ok": dec.image is not None, "decode_error": dec.error,
            "decode_detail": dec.detail, "source_image_id": entry.source_image_id,
        }
        row.update(dict.fromkeys(PROPERTY_COLUMNS, np.nan), phash=None)
        if dec.image is not None:
            h, w = dec.image.shape[:2]
            declared = (entry.declared_width, entry.declared_height)
            if declared != (None, None) and declared != (w, h):
                records.append(QuarantineRecord(
                    entry.source, "size_mismatch",
                    f"{entry.source}: annotations declare {declared[0]}x{declared[1]} but the "
                    f"image is {w}x{h}; its boxes cannot be trusted", level="image",
                    image_id=image_id))
                continue
            row.update(width=w, height=h, phash=perceptual_hash(dec.image),
                       **pixel_properties(dec.image))
        rows.append(row)
        kept[entry.file_name] = file_name
    images = pd.DataFrame(rows, columns=[*IMAGE_COLUMNS[:11], *PROPERTY_COLUMNS, "phash"])
    images["width"] = images["width"].astype("Int64")
    images["height"] = images["height"].astype("Int64")
    images["file_size"] = images["file_size"].astype("int64")
    images["decode_ok"] = images["decode_ok"].astype(bool)
    images["source_image_id"] = uniform_ids(images["source_image_id"])
    for col in PROPERTY_COLUMNS:
        images[col] = images[col].astype(float)
    return images, records, kept


def _box_sort_key(b: BoxEntry) -> tuple:
    sid = b.source_box_id
    sid_key = (0, int(sid), "") if isinstance(sid, (int, np.integer)) else (1, 0, str(sid))
    return (b.file_name, b.line if b.line is not None else 0, sid_key)


def _build_boxes(entries: list[BoxEntry], images: pd.DataFrame, shown: dict[str, str]
                 ) -> tuple[pd.DataFrame, list[QuarantineRecord]]:
    by_name = {r.file_name: r for r in images.itertuples(index=False)}
    rows, records = [], []
    for b in sorted(entries, key=_box_sort_key):
        im = by_name.get(shown.get(b.file_name, ""))
        if im is None:
            records.append(QuarantineRecord(
                b.source, "image_quarantined",
                f"{where(b.source, b.line, b.source_box_id)}: its image {b.file_name} was "
                f"quarantined", line=b.line))
            continue
        c0, c1, c2, c3 = b.coords
        if b.normalized:
            W = float(im.width) if im.decode_ok else np.nan
            H = float(im.height) if im.decode_ok else np.nan
            x, y, w, h = (c0 - c2 / 2) * W, (c1 - c3 / 2) * H, c2 * W, c3 * H
        else:
            x, y, w, h = c0, c1, c2, c3
        rows.append({
            "image_id": im.image_id, "file_name": im.file_name, "class_id": b.class_id,
            "class_name": b.class_name, "x": x, "y": y, "w": w, "h": h,
            "area": b.area if b.area is not None else w * h, "iscrowd": b.iscrowd,
            "truncated": b.truncated, "occluded": b.occluded, "source": printable(b.source),
            "line": b.line, "source_box_id": b.source_box_id,
        })
    boxes = pd.DataFrame(rows, columns=[c for c in BOX_COLUMNS if c not in ("box_id", "size_bin")])
    boxes.insert(1, "box_id", np.arange(len(boxes), dtype=np.int64))
    boxes["class_id"] = boxes["class_id"].astype("int64")
    for col in ("x", "y", "w", "h", "area", "occluded"):
        boxes[col] = pd.to_numeric(boxes[col], errors="coerce").astype(float)
    boxes["iscrowd"] = pd.to_numeric(boxes["iscrowd"], errors="coerce").astype("Int64")
    boxes["truncated"] = boxes["truncated"].map(_to_bool).astype("boolean")
    boxes["line"] = boxes["line"].astype("Int64")
    boxes["source_box_id"] = uniform_ids(boxes["source_box_id"])
    boxes.insert(boxes.columns.get_loc("occluded") + 1, "size_bin", size_bin(boxes["area"]))
    return boxes, records


def uniform_ids(values: pd.Series) -> pd.Series:
    """Source ids as ``Int64`` when all are integers, else as strings (Parquet needs one type)."""
    present = values.dropna()
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return values.astype("Int64")
    return values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                      else printable(str(v))).astype(object)


def _to_bool(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return pd.NA
    if isinstance(v, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(v.strip().lower(), pd.NA)
    return bool(v)


def find_metadata(landing: Path) -> Path | None:
    for name in ("metadata.parquet", "metadata.csv"):
        if os.path.lexists(landing / name):
            return required_file(landing.resolve(), name, "the metadata table")
    return None


def metadata_file(metadata_path: str | Path | None, landing: Path) -> Path | None:
    """The metadata table to join: the one named in the settings (anywhere: the user chose it),
    else ``metadata.parquet`` / ``metadata.csv`` in the landing folder (which must stay in it)."""
    if metadata_path is None:
        return find_metadata(landing)
    path = Path(metadata_path).expanduser()
    found = locate(path.parent.resolve(), path.name)
    if isinstance(found, Refusal):
        why = "does not exist" if found.code == "missing_file" else found.why
        raise IngestError(f"metadata file {path}: {why}")
    return found


def read_metadata(path: Path, landing: Path) -> tuple[pd.DataFrame | None, list[QuarantineRecord]]:
    """A metadata table keyed by ``file_name`` and/or ``image_id``; unreadable → ``IngestError``
    (one line naming the file: slices silently derived from pixels instead would hide it)."""
    source = printable(rel(path.resolve(), landing.resolve()))
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(io.BytesIO(read_regular(path)))
        elif path.suffix.lower() in (".csv", ".txt"):
            df = pd.read_csv(io.BytesIO(read_regular(path)), encoding="utf-8-sig")
        else:
            raise ValueError(f"unknown table type {path.suffix!r} (use .csv or .parquet)")
    except Exception as exc:  # noqa: BLE001 - any unreadable table stops the run, in one line
        detail = " ".join(str(exc).split())[:200]
        raise IngestError(f"{source}: the metadata table cannot be read "
                          f"({type(exc).__name__}: {detail})") from None
    if "file_name" not in df.columns and "image_id" not in df.columns:
        raise IngestError(f"{source}: the metadata table needs a 'file_name' or 'image_id' "
                          f"column (has {[str(c) for c in df.columns][:10]})")
    df.columns = [printable(str(c)) for c in df.columns]
    return df, []


def metadata_problems(meta: pd.DataFrame, source: str
                      ) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    """Rows whose values do not parse, and keys with disagreeing rows: ``{key: (code, why)}``;
    the table returned has them removed and its numeric-looking columns as numbers.

    A column counts as numeric when most of its non-empty values parse as numbers: the others
    are then typos (``"three"`` in ``week``), not a categorical column's labels.
    """
    meta = meta.reset_index(drop=True).copy()
    csv = source.lower().endswith((".csv", ".txt"))
    row_at = (lambda i: f"{source} line {i + 2}") if csv else (lambda i: f"{source} row {i + 1}")
    key_col = "file_name" if "file_name" in meta.columns else "image_id"
    keys = meta[key_col].map(
        lambda v: None if pd.isna(v) else (_norm_name(v) if key_col == "file_name" else _id_key(v)))
    problems: dict[str, tuple[str, str]] = {}

    def flag(i: int, code: str, why: str) -> None:
        if keys[i] is not None and keys[i] not in problems:
            problems[keys[i]] = (code, f"{row_at(i)}: {why}")

    for col in [c for c in meta.columns if c not in ("file_name", "image_id")]:
        values = meta[col]
        present = values.notna() & (values.astype(str).str.strip() != "")
        if col == "captured_at":
            parsed = _to_datetime(values.where(present))
            for i in np.flatnonzero(present & parsed.isna()):
                flag(int(i), "bad_metadata_value",
                     f"captured_at {printable(str(values[i]))!r} is not a date/time")
            meta[col] = values.where(present)
        elif (present.any() and not pd.api.types.is_numeric_dtype(values)
              and not pd.api.types.is_datetime64_any_dtype(values)):
            numbers = pd.to_numeric(values.where(present), errors="coerce")
            bad = present & numbers.isna()
            if numbers.notna().sum() > present.sum() / 2 and bad.any():
                for i in np.flatnonzero(bad):
                    flag(int(i), "bad_metadata_value",
                         f"{col} {printable(str(values[i]))!r} is not a number (the column's "
                         f"other values are)")
                meta[col] = numbers
    rows = meta.assign(__key=keys)[keys.notna()]
    value_cols = [c for c in meta.columns if c not in ("file_name", "image_id")]
    for key, group in rows[rows["__key"].duplicated(keep=False)].groupby("__key", sort=True):
        differ = [c for c in value_cols if group[c].astype(object).where(
            group[c].notna(), None).map(repr).nunique() > 1]
        if differ:
            first = int(group.index[0])
            problems.setdefault(key, ("conflicting_metadata", f"{row_at(first)}: {len(group)} rows "
                                      f"for this image disagree on {differ[:5]}"))
    bad_rows = keys.isin(list(problems))
    return meta[~bad_rows].reset_index(drop=True), problems


def _quarantine_metadata_problems(images: pd.DataFrame, boxes: pd.DataFrame,
                                  problems: dict[str, tuple[str, str]], kind: str
                                  ) -> tuple[pd.DataFrame, pd.DataFrame, list[QuarantineRecord]]:
    """Images whose metadata is bad leave the tables, each with its boxes, and get a reason."""
    if not problems or not len(images):
        return images, boxes, []
    by_name = images["file_name"].map(_norm_name)
    by_id = images["source_image_id"].map(_id_key)
    hit = by_name.isin(list(problems)) | by_id.isin(list(problems))
    records: list[QuarantineRecord] = []
    for _, r in images[hit].iterrows():
        key = by_name[_] if by_name[_] in problems else by_id[_]
        code, why = problems[key]
        records.append(QuarantineRecord(r["source"], code, f"{r['source']}: {why}",
                                        level="image", image_id=r["image_id"]))
    gone = boxes["file_name"].isin(set(images.loc[hit, "file_name"]))
    for _, b in boxes[gone].iterrows():
        records.append(QuarantineRecord(
            b["source"], "image_quarantined",
            f"{where(b['source'], b['line'], b['source_box_id'])}: its image {b['file_name']} "
            f"was quarantined (metadata)", line=None if pd.isna(b["line"]) else int(b["line"]),
            image_id=b["image_id"]))
    boxes = boxes[~gone].reset_index(drop=True)
    boxes["box_id"] = np.arange(len(boxes), dtype=np.int64)
    return images[~hit].reset_index(drop=True), boxes, records


def _id_key(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _norm_name(name: Any) -> str:
    s = str(name).replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s[len("images/"):] if s.startswith("images/") else s


def _join_metadata(images: pd.DataFrame, meta: pd.DataFrame, kind: str
                   ) -> tuple[pd.DataFrame, dict[str, Any], set[str]]:
    meta = meta.copy()
    if "file_name" in meta.columns:
        key, left = "file_name", images["file_name"].map(_norm_name)
        meta["__key"] = meta["file_name"].map(lambda v: None if pd.isna(v) else _norm_name(v))
        meta = meta.drop(columns=["file_name"])
        if "image_id" in meta.columns:
            meta = meta.rename(columns={"image_id": "__meta_image_id"})
    else:
        key, left = "image_id", images["source_image_id"].map(_id_key)
        meta["__key"] = meta["image_id"].map(_id_key)
        meta = meta.drop(columns=["image_id"])
    meta = meta[meta["__key"].notna()]  # rows without a key cannot match any image
    duplicates = int(meta["__key"].duplicated().sum())
    meta = meta.drop_duplicates("__key", keep="first")
    original = set(meta.columns) - {"__key", "__meta_image_id"}
    renames = {c: f"meta_{c}" for c in original if c in _RESERVED}
    meta = meta.rename(columns=renames)
    if "captured_at" in meta.columns:
        meta["captured_at"] = _to_datetime(meta["captured_at"])
    out = images.assign(__key=left.to_numpy()).merge(meta, on="__key", how="left",
                                                     indicator=True)
    matched = out["_merge"] == "both"
    if "__meta_image_id" in out.columns:
        if kind != "coco":
            out["source_image_id"] = uniform_ids(out["source_image_id"].astype(object).where(
                out["source_image_id"].notna(), out["__meta_image_id"]))
        out = out.drop(columns=["__meta_image_id"])
    out = out.drop(columns=["__key", "_merge"])
    stats = {"key": key, "rows": int(len(meta) + duplicates), "duplicate_keys": duplicates,
             "matched_images": int(matched.sum()),
             "images_without_metadata": int((~matched).sum()),
             "unmatched_rows": int(len(meta) - matched.sum()),
             "renamed_columns": renames}
    return out, stats, original


def _to_datetime(values: pd.Series) -> pd.Series:
    try:
        return pd.to_datetime(values, errors="coerce")
    except (TypeError, ValueError):
        return pd.to_datetime(values, errors="coerce", utc=True)


def hash_unit(text: str) -> float:
    """A stable pseudo-random number in [0, 1) from ``text`` (a seeded, order-free draw)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:15], 16) / float(16**15)


def assign_groups(images: pd.DataFrame, window_minutes: float,
                  hash_distance: int = NEAR_DUPLICATE_BITS) -> pd.Series:
    """Near-duplicate groups, so that no group straddles the split.

    Frames with a usable ``captured_at`` are chained per camera (when a ``camera`` column
    exists) within ``window_minutes``. Frames without one are grouped by their perceptual hash
    (``phash``): two frames whose 64-bit hashes differ in at most ``hash_distance`` bits are
    near-duplicates, and groups are the connected components (consecutive frames of one clip
    chain into one group). Without a ``phash`` column such frames are grouped by content hash
    (byte-identical copies share ``h:<image_id>``).
    """
    groups = pd.Series("h:" + images["image_id"].astype(str), index=images.index, dtype=object)
    if not len(images):
        return groups
    timed = pd.Series(False, index=images.index)
    if "captured_at" in images.columns:
        ts = pd.to_datetime(images["captured_at"], errors="coerce", utc=True)
        timed = ts.notna()
        cam = (images["camera"].astype(str) if "camera" in images.columns
               else pd.Series("", index=images.index))
        frame = pd.DataFrame({"cam": cam, "ts": ts, "id": images["image_id"]})[timed]
        frame = frame.sort_values(["cam", "ts", "id"], kind="mergesort")
        window = pd.Timedelta(minutes=float(window_minutes))
        new = (frame["cam"] != frame["cam"].shift()) | (frame["ts"].diff() > window)
        first_ts = frame["ts"].where(new).ffill()
        keys = frame["cam"] + "|" + first_ts.map(lambda t: t.isoformat())
        groups.loc[frame.index] = "t:" + keys.map(
            lambda k: hashlib.sha1(k.encode()).hexdigest()[:12])
    if "phash" in images.columns and hash_distance >= 0:
        untimed = images[~timed & images["phash"].notna()]
        if len(untimed):
            groups.loc[untimed.index] = phash_groups(untimed["phash"], untimed["image_id"],
                                                     hash_distance)
    return groups


def phash_groups(hashes: pd.Series, image_ids: pd.Series, max_bits: int) -> pd.Series:
    """Connected components of frames whose hex perceptual hashes differ in <= ``max_bits``
    bits; each component is named ``p:`` + its smallest image id (order-independent)."""
    bits = np.unpackbits(np.array([np.frombuffer(bytes.fromhex(h), np.uint8)
                                   for h in hashes.astype(str)]), axis=1)
    n = len(bits)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    as_int = bits.astype(np.int16)
    block = 512  # rows per step: n x block distances at a time, not n x n
    for start in range(0, n, block):
        chunk = as_int[start:start + block]
        dist = (chunk[:, None, :] != as_int[None, :, :]).sum(axis=2) if n * len(chunk) < 4e6 \
            else np.stack([(row != as_int).sum(axis=1) for row in chunk])
        for a, b in zip(*np.nonzero(dist <= max_bits), strict=True):
            i, j = find(start + int(a)), find(int(b))
            if i != j:
                parent[max(i, j)] = min(i, j)
    roots = np.array([find(i) for i in range(n)])
    ids = image_ids.astype(str).to_numpy()
    name = pd.Series(ids).groupby(roots).transform("min").to_numpy()
    return pd.Series(["p:" + v for v in name], index=hashes.index, dtype=object)


def stratum_keys(images: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not columns:
        return pd.Series("all", index=images.index, dtype=object)
    parts = [c + "=" + images[c].astype(object).where(images[c].notna(), "?").astype(str)
             for c in columns]
    key = parts[0]
    for p in parts[1:]:
        key = key + "|" + p
    return key.astype(object)


def assign_split(images: pd.DataFrame, *, eval_fraction: float, seed: int = 0,
                 boxes: pd.DataFrame | None = None) -> pd.Series:
    """``finetune`` / ``eval`` per image from ``group_id`` and ``stratum`` (see module doc);
    ``boxes`` (``image_id, class_id``): every class in two or more groups on both sides."""
    split = pd.Series(None, index=images.index, dtype=object)
    ok = images[images["decode_ok"].astype(bool)] if len(images) else images
    if not len(ok):
        return split
    members = ok.groupby("group_id")
    sizes = members.size()
    stratum_of = members["stratum"].agg(
        lambda s: sorted(s.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[0][0])
    table = pd.DataFrame({"size": sizes, "stratum": stratum_of})
    table["score"] = [hash_unit(f"{seed}:{g}") for g in table.index]
    eval_groups: set[str] = set()
    carry = 0.0
    for _, part in sorted(table.groupby("stratum"), key=lambda kv: kv[0]):
        target = eval_fraction * part["size"].sum() + carry
        picked = 0
        for gid, row in part.sort_values(["score"]).iterrows():
            if abs(picked + row["size"] - target) < abs(picked - target):
                eval_groups.add(gid)
                picked += int(row["size"])
        carry = target - picked
    if boxes is not None and len(boxes):
        eval_groups = _cover_classes(ok, boxes, table["score"], eval_groups)
    split.loc[ok.index] = np.where(ok["group_id"].isin(eval_groups), "eval", "finetune")
    return split


def _cover_classes(images: pd.DataFrame, boxes: pd.DataFrame, score: pd.Series,
                   eval_groups: set) -> set:
    """Move whole groups so that every class present in two or more groups has a group on each
    side of the split (rarest class first; groups in hash order; a move never leaves another
    class with no group on the side the group leaves)."""
    group_of = images.drop_duplicates("image_id").set_index("image_id")["group_id"]
    pairs = pd.DataFrame({"group_id": group_of.reindex(boxes["image_id"]).to_numpy(),
                          "class_id": boxes["class_id"].to_numpy()}).dropna().drop_duplicates()
    groups_of = {c: sorted(g["group_id"], key=lambda x: (score[x], x))
                 for c, g in pairs.groupby("class_id")}
    classes_in = pairs.groupby("group_id")["class_id"].agg(set).to_dict()
    eval_groups = set(eval_groups)
    for cls in sorted(groups_of, key=lambda c: (len(groups_of[c]), c)):
        if len(groups_of[cls]) < 2:
            continue
        for to_eval in (True, False):
            if any((g in eval_groups) == to_eval for g in groups_of[cls]):
                continue
            movable = [g for g in groups_of[cls]
                       if _not_last(g, classes_in.get(g, set()) - {cls}, groups_of, eval_groups,
                                    side_eval=not to_eval)]
            if movable:
                (eval_groups.add if to_eval else eval_groups.discard)(movable[0])
    return eval_groups


def _not_last(group, classes, groups_of: dict, eval_groups: set, side_eval: bool) -> bool:
    """Whether ``group`` can leave its side (eval if ``side_eval``) without taking the last
    group of one of ``classes`` (those in two or more groups) off it."""
    return all(any(o != group and (o in eval_groups) == side_eval for o in groups_of[c])
               for c in classes if len(groups_of[c]) > 1)


def _stats(kind: str, landing: Path, images: pd.DataFrame, boxes: pd.DataFrame,
           quarantine: pd.DataFrame, notes: list[str]) -> dict[str, Any]:
    level = quarantine["level"]
    n_img_q, n_box_q = int((level == "image").sum()), int((level == "box").sum())
    split_counts = images["split"].value_counts().to_dict() if len(images) else {}
    return {
        "format": kind, "landing_dir": str(landing.resolve()),
        "images_found": len(images) + n_img_q, "images_ingested": len(images),
        "images_quarantined": n_img_q,
        "images_undecodable": int((~images["decode_ok"].astype(bool)).sum()),
        "boxes_found": len(boxes) + n_box_q, "boxes_ingested": len(boxes),
        "boxes_quarantined": n_box_q, "files_quarantined": int((level == "file").sum()),
        "reasons": reason_counts(quarantine), "groups": int(images["group_id"].nunique()),
        "largest_group": int(images["group_id"].value_counts().max()) if len(images) else 0,
        "split": {k: int(v) for k, v in split_counts.items()}, "notes": list(notes),
    }
