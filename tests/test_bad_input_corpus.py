"""A corpus of hostile and odd landing folders: each case ends in accept, quarantine with a
reason, or a one-line refusal -- never an escape, a hang or a crash -- and the books balance.

Sample cases run ingestion + label validation on a hand-made folder; batch cases run the landing
zone's completeness check (``scan_landing`` / ``batch_is_complete`` / ``batch_folder``). For every
sample case that is not refused: images in = accepted + quarantined, boxes likewise, every
image-like file present in the folder shows up as accepted or as a quarantine row, every reason is
one line, and every table can be written as Parquet (odd file names included).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.errors import IngestError, PreflightDataError, printable
from preflight.data.filenames import fs_path, read_image_bgr
from preflight.data.formats import IMAGE_EXTENSIONS
from preflight.data.ingest import ingest
from preflight.data.landing import (
    batch_folder,
    batch_is_complete,
    mark_complete,
    scan_landing,
    write_manifest,
)
from preflight.data.validate import validate_labels
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

NAMES_YAML = "names: [" + ", ".join(DEFAULT_TAXONOMY.names) + "]\n"
BOX = "0 0.5 0.5 0.2 0.2\n"


def jpeg(seed: int = 0) -> bytes:
    img = np.full((48, 48, 3), 100, np.uint8)
    img[8:24, 8:24] = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


# ------------------------------------------------------------------------------- builders
def yolo(root: Path, images: dict[str | bytes, bytes | None] | None = None,
         labels: dict[str | bytes, bytes | str] | None = None, names: bool = True) -> None:
    """A YOLO folder; names may be bytes (non-UTF-8 file names); None content: skip."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    if names:
        (root / "data.yaml").write_text(NAMES_YAML)
    for i, (name, data) in enumerate((images or {"ok.jpg": None}).items()):
        path = _join(root / "images", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(i) if data is None else data)
    for name, text in (labels or {}).items():
        path = _join(root / "labels", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)


def _join(folder: Path, name: str | bytes) -> Path:
    if isinstance(name, bytes):
        return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))
    return folder / name


def coco(root: Path, images: list[dict], annotations: list[dict] | None = None,
         files: dict[str, bytes | None] | None = None) -> None:
    (root / "images").mkdir(exist_ok=True)
    for i, name in enumerate(files if files is not None else {"a.jpg": None}):
        data = (files or {}).get(name)
        (root / "images" / name).write_bytes(jpeg(i) if data is None else data)
    cats = [{"id": i, "name": n} for i, n in enumerate(DEFAULT_TAXONOMY.names)]
    doc = {"images": images, "annotations": annotations or [], "categories": cats}
    (root / "annotations.json").write_text(json.dumps(doc))


def with_metadata(root: Path, csv: str | bytes, name: str = "metadata.csv") -> None:
    (root / name).write_bytes(csv.encode() if isinstance(csv, str) else csv)


def unix_socket(path: Path) -> None:
    """A socket file at ``path`` (bound relative to its folder: AF_UNIX paths are short)."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(here)


@dataclass
class Case:
    id: str
    build: Callable[[Path, Path], None]  # (landing folder, a folder outside it)
    quarantined: dict[str, str] = field(default_factory=dict)  # source -> reason code
    accepted: set[str] | None = None  # the sources of the images that pass
    refuse: str | None = None  # a regex the one-line refusal must match
    required: dict | None = None  # validation.required_columns


def _image_a(root: Path) -> None:
    yolo(root, {"a.jpg": None}, {"a.txt": BOX})


SAMPLE_CASES = [
    # ---- paths that leave the landing folder, symlinks ---------------------------------
    Case("yolo_symlink_image_outside",
         lambda r, o: (_image_a(r), (o / "secret.jpg").write_bytes(jpeg(9)),
                       (r / "images" / "s.jpg").symlink_to(o / "secret.jpg")),
         {"images/s.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("yolo_symlink_image_inside_is_read",
         lambda r, o: (_image_a(r), (r / "store").mkdir(), (r / "store" / "b.bin").write_bytes(
             jpeg(5)), (r / "images" / "b.jpg").symlink_to(r / "store" / "b.bin")),
         {}, {"images/a.jpg", "images/b.jpg"}),
    Case("yolo_relative_symlink_climbing_out",
         lambda r, o: (_image_a(r), (o / "x.jpg").write_bytes(jpeg(9)),
                       (r / "images" / "up.jpg").symlink_to(os.path.relpath(o / "x.jpg",
                                                                            r / "images"))),
         {"images/up.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("yolo_images_folder_is_symlink_outside",
         lambda r, o: ((o / "imgs").mkdir(), (o / "imgs" / "x.jpg").write_bytes(jpeg(1)),
                       (r / "images").symlink_to(o / "imgs"), (r / "data.yaml").write_text(
                           NAMES_YAML)),
         refuse=r"^label validation failed: 100% .* path_escape \(1, e\.g\. images/x\.jpg: "
                r"resolves outside the landing folder"),
    Case("yolo_symlinked_subfolder_not_followed",
         lambda r, o: (_image_a(r), (o / "more").mkdir(), (o / "more" / "m.jpg").write_bytes(
             jpeg(2)), (r / "images" / "more").symlink_to(o / "more")),
         {"images/more": "symlinked_folder"}, {"images/a.jpg"}),
    Case("yolo_symlink_loop_named_like_image",
         lambda r, o: (_image_a(r), (r / "images" / "loop.jpg").symlink_to(
             r / "images" / "loop.jpg")),
         {"images/loop.jpg": "bad_file_name"}, {"images/a.jpg"}),
    Case("yolo_dangling_symlink",
         lambda r, o: (_image_a(r), (r / "images" / "gone.jpg").symlink_to(o / "nothing.jpg")),
         {"images/gone.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("yolo_dangling_symlink_inside",
         lambda r, o: (_image_a(r), (r / "images" / "gone.jpg").symlink_to(
             r / "images" / "nothing.jpg")),
         {"images/gone.jpg": "missing_file"}, {"images/a.jpg"}),
    Case("yolo_label_symlink_outside",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}, {"a.txt": BOX}),
                       (o / "b.txt").write_text(BOX),
                       (r / "labels" / "b.txt").symlink_to(o / "b.txt")),
         {"images/b.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("yolo_data_yaml_symlink_outside",
         lambda r, o: (yolo(r, names=False), (o / "d.yaml").write_text(NAMES_YAML),
                       (r / "data.yaml").symlink_to(o / "d.yaml")),
         refuse=r"^data.yaml: the YOLO class-name file resolves outside the landing folder"),
    # ---- special files ---------------------------------------------------------------
    Case("yolo_fifo_named_like_image",
         lambda r, o: (_image_a(r), os.mkfifo(r / "images" / "pipe.jpg")),
         {"images/pipe.jpg": "not_regular_file"}, {"images/a.jpg"}),
    Case("yolo_socket_named_like_image",
         lambda r, o: (_image_a(r), unix_socket(r / "images" / "s.jpg")),
         {"images/s.jpg": "not_regular_file"}, {"images/a.jpg"}),
    Case("yolo_symlink_to_dev_null",
         lambda r, o: (_image_a(r), (r / "images" / "null.jpg").symlink_to("/dev/null")),
         {"images/null.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("yolo_fifo_label",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}, {"a.txt": BOX}),
                       os.mkfifo(r / "labels" / "b.txt")),
         {"images/b.jpg": "not_regular_file"}, {"images/a.jpg"}),
    Case("yolo_folder_named_like_label",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}, {"a.txt": BOX}),
                       (r / "labels" / "b.txt").mkdir(), (r / "labels" / "b.txt" / "x.txt")
                       .write_text(BOX)),
         {"labels/b.txt/x.txt": "orphan_label"}, {"images/a.jpg", "images/b.jpg"}),
    Case("yolo_fifo_data_yaml",
         lambda r, o: (yolo(r, names=False), os.mkfifo(r / "data.yaml")),
         refuse=r"^data.yaml: the YOLO class-name file is a FIFO \(named pipe\), not a regular"),
    Case("coco_fifo_listed_image",
         lambda r, o: (coco(r, [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "p.jpg"}]),
                       os.mkfifo(r / "images" / "p.jpg")),
         {"p.jpg": "not_regular_file"}, {"images/a.jpg"}),
    Case("coco_fifo_annotations",
         lambda r, o: ((r / "images").mkdir(), os.mkfifo(r / "annotations.json")),
         refuse=r"^annotations.json: the COCO annotations file is a FIFO"),
    Case("coco_file_name_is_a_folder",
         lambda r, o: (coco(r, [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "sub"}]),
                       (r / "images" / "sub").mkdir()),
         {"sub": "not_regular_file"}, {"images/a.jpg"}),
    # ---- COCO file_names ---------------------------------------------------------------
    Case("coco_dotdot", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                              {"id": 2, "file_name": "../../etc/passwd"}]),
         {"../../etc/passwd": "path_escape"}, {"images/a.jpg"}),
    Case("coco_absolute", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                {"id": 2, "file_name": "/etc/hostname"}]),
         {"/etc/hostname": "path_escape"}, {"images/a.jpg"}),
    Case("coco_windows_drive", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                     {"id": 2, "file_name": "C:\\x.jpg"}]),
         {"C:\\x.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("coco_backslash_dotdot", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                        {"id": 2, "file_name": "..\\..\\x.jpg"}]),
         {"..\\..\\x.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("coco_nul_in_name", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                   {"id": 2, "file_name": "a.jpg\x00.png"}]),
         {"a.jpg\x00.png": "bad_file_name"}, {"images/a.jpg"}),
    Case("coco_lone_surrogate_name", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                           {"id": 2, "file_name": "\ud800.jpg"}]),
         {"\\ud800.jpg": "bad_file_name"}, {"images/a.jpg"}),
    Case("coco_name_too_long", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                     {"id": 2, "file_name": "n" * 300 + ".jpg"}]),
         {"n" * 300 + ".jpg": "bad_file_name"}, {"images/a.jpg"}),
    Case("coco_symlink_inside_pointing_out",
         lambda r, o: (coco(r, [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "s.jpg"}]),
                       (o / "s.jpg").write_bytes(jpeg(3)),
                       (r / "images" / "s.jpg").symlink_to(o / "s.jpg")),
         {"s.jpg": "path_escape"}, {"images/a.jpg"}),
    Case("coco_annotations_symlink_outside",
         lambda r, o: ((r / "images").mkdir(), (o / "ann.json").write_text(
             '{"images": [], "annotations": []}'), (r / "annotations.json").symlink_to(
             o / "ann.json")),
         refuse=r"^annotations.json: the COCO annotations file resolves outside"),
    Case("coco_unlisted_image",
         lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"}],
                           files={"a.jpg": None, "extra.jpg": None}),
         {"images/extra.jpg": "unlisted_image"}, {"images/a.jpg"}),
    Case("coco_unlisted_image_beside_the_json",
         lambda r, o: (coco(r, [{"id": 1, "file_name": "a.jpg"}]),
                       (r / "stray.png").write_bytes(jpeg(4))),
         {"stray.png": "unlisted_image"}, {"images/a.jpg"}),
    Case("coco_nfc_name_nfd_file",
         lambda r, o: coco(r, [{"id": 1, "file_name": unicodedata.normalize("NFC", "café.jpg")}],
                           files={unicodedata.normalize("NFD", "café.jpg"): None}),
         {}, {"images/" + unicodedata.normalize("NFD", "café.jpg")}),
    Case("coco_bool_image_id", lambda r, o: coco(r, [{"id": 1, "file_name": "a.jpg"},
                                                     {"id": True, "file_name": "b.jpg"}],
                                                 files={"a.jpg": None, "b.jpg": None}),
         {"annotations.json": "coco_bad_value", "images/b.jpg": "unlisted_image"},
         {"images/a.jpg"}),
    Case("coco_overflowing_width",
         lambda r, o: (coco(r, [{"id": 1, "file_name": "a.jpg"}]),
                       (r / "annotations.json").write_text(
                           (r / "annotations.json").read_text().replace(
                               '"file_name": "a.jpg"', '"file_name": "a.jpg", "width": 1e400'))),
         {}, {"images/a.jpg"}),
    # ---- broken annotation files ----------------------------------------------------------
    Case("coco_truncated_json",
         lambda r, o: ((r / "images").mkdir(), (r / "annotations.json").write_text(
             '{"images": [{"id": 1, "file_na')),
         refuse=r"^annotations.json: cannot be read as JSON \(JSONDecodeError: Unterminated"),
    Case("coco_empty_file",
         lambda r, o: ((r / "images").mkdir(), (r / "annotations.json").write_bytes(b"")),
         refuse=r"^annotations.json: cannot be read as JSON"),
    Case("coco_images_not_a_list",
         lambda r, o: ((r / "images").mkdir(), (r / "annotations.json").write_text(
             '{"images": {"1": "a.jpg"}, "annotations": []}')),
         refuse=r"^annotations.json: a COCO file needs list-valued top-level keys"),
    Case("coco_utf16_json",
         lambda r, o: ((r / "images").mkdir(), (r / "annotations.json").write_bytes(
             '{"images": [], "annotations": []}'.encode("utf-16"))),
         refuse=r"^annotations.json: cannot be read as JSON \(UnicodeDecodeError"),
    Case("yolo_data_yaml_is_a_list",
         lambda r, o: (yolo(r, names=False), (r / "data.yaml").write_text("- person\n- box\n")),
         refuse=r"^data.yaml: cannot read the class names \(.*'list' object"),
    Case("yolo_data_yaml_binary",
         lambda r, o: (yolo(r, names=False), (r / "data.yaml").write_bytes(b"\xff\xfe\x00\x01")),
         refuse=r"^data.yaml: cannot read the class names \(.*codec can't decode"),
    Case("yolo_label_binary_garbage",
         lambda r, o: yolo(r, {"a.jpg": None, "b.jpg": None},
                           {"a.txt": BOX, "b.txt": b"\x00\xff\xfe\x80garbage"}),
         {"images/b.jpg": "unreadable_label"}, {"images/a.jpg"}),
    Case("yolo_label_utf16",
         lambda r, o: yolo(r, {"a.jpg": None, "b.jpg": None},
                           {"a.txt": BOX, "b.txt": BOX.encode("utf-16")}),
         {"images/b.jpg": "unreadable_label"}, {"images/a.jpg"}),
    Case("yolo_label_not_txt",
         lambda r, o: yolo(r, {"a.jpg": None}, {"a.txt": BOX, "a.json": "{}"}),
         {"labels/a.json": "unsupported_file"}, {"images/a.jpg"}),
    Case("yolo_boxes_metadata_garbage",
         lambda r, o: (_image_a(r), (r / "boxes_metadata.parquet").write_bytes(b"PAR1 nope")),
         refuse=r"^boxes_metadata.parquet: cannot be read as a table"),
    Case("yolo_empty_images_folder",
         lambda r, o: (r / "images").mkdir(),
         refuse=r"^label validation failed: no images to validate"),
    # ---- odd encodings and names ---------------------------------------------------------
    Case("yolo_unicode_names",
         lambda r, o: yolo(r, {"café.jpg": None, "日本語.jpg": None, "rocket 🚀.png": None,
                               "space name.jpg": None},
                           {"café.txt": BOX, "日本語.txt": BOX, "rocket 🚀.txt": BOX,
                            "space name.txt": BOX}),
         {}, {"images/café.jpg", "images/日本語.jpg", "images/rocket 🚀.png",
              "images/space name.jpg"}),
    Case("yolo_nfd_name",
         lambda r, o: yolo(r, {unicodedata.normalize("NFD", "ñandú.jpg"): None},
                           {unicodedata.normalize("NFD", "ñandú.txt"): BOX}),
         {}, {"images/" + unicodedata.normalize("NFD", "ñandú.jpg")}),
    Case("yolo_newline_and_quotes_in_name",
         lambda r, o: yolo(r, {"a\nb 'q'.jpg": None}, {"a\nb 'q'.txt": BOX}),
         {}, {"images/a\nb 'q'.jpg"}),
    # names that are not UTF-8 (bytes on Linux) are read; the tables show them escaped
    Case("yolo_latin1_file_name",
         lambda r, o: yolo(r, {"a.jpg": None, b"caf\xe9.jpg": None},
                           {"a.txt": BOX, b"caf\xe9.txt": BOX}),
         {}, {"images/a.jpg", "images/caf\\xe9.jpg"}),
    Case("yolo_cp1252_name_with_quotes_and_spaces",
         lambda r, o: yolo(r, {b"\x80 price \x93q\x94 'x'.png": None},
                           {b"\x80 price \x93q\x94 'x'.txt": BOX}),
         {}, {"images/\\x80 price \\x93q\\x94 'x'.png"}),
    Case("yolo_invalid_utf8_in_subfolder_name",
         lambda r, o: yolo(r, {b"cam\xff/f.jpg": None, "a.jpg": None},
                           {b"cam\xff/f.txt": BOX, "a.txt": BOX}),
         {}, {"images/a.jpg", "images/cam\\xff/f.jpg"}),
    Case("yolo_latin1_image_utf8_label",
         lambda r, o: yolo(r, {b"caf\xe9.jpg": None}, {"café.txt": BOX}),
         {}, {"images/caf\\xe9.jpg"}),
    Case("yolo_nfc_label_nfd_image",
         lambda r, o: yolo(r, {unicodedata.normalize("NFD", "Zürich.jpg"): None},
                           {unicodedata.normalize("NFC", "Zürich.txt"): BOX}),
         {}, {"images/" + unicodedata.normalize("NFD", "Zürich.jpg")}),
    Case("yolo_escaped_name_same_as_a_literal_name",
         lambda r, o: yolo(r, {b"caf\xe9.jpg": None, "caf\\xe9.jpg": None}),
         {"images/caf\\xe9.jpg": "bad_file_name"}, {"images/caf\\xe9.jpg"}),
    Case("coco_utf8_name_latin1_file",
         lambda r, o: coco(r, [{"id": 1, "file_name": "café.jpg"}],
                           [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [4, 4, 10, 10]}],
                           files={os.fsdecode(b"caf\xe9.jpg"): None}),
         {}, {"images/caf\\xe9.jpg"}),
    Case("coco_file_name_with_newline_and_quotes",
         lambda r, o: coco(r, [{"id": 1, "file_name": 'a "b"\nc.jpg'}],
                           files={'a "b"\nc.jpg': None}),
         {}, {'images/a "b"\nc.jpg'}),
    Case("yolo_shared_label_stem",
         lambda r, o: yolo(r, {"a.jpg": None, "a.png": None, "b.jpg": None}, {"a.txt": BOX}),
         {"images/a.jpg": "shared_label_stem", "images/a.png": "shared_label_stem",
          "labels/a.txt": "shared_label_stem"}, {"images/b.jpg"}),
    Case("yolo_same_stem_in_other_folders_is_fine",
         lambda r, o: yolo(r, {"a.jpg": None, "cam2/a.jpg": None},
                           {"a.txt": BOX, "cam2/a.txt": BOX}),
         {}, {"images/a.jpg", "images/cam2/a.jpg"}),
    Case("yolo_text_file_among_images",
         lambda r, o: (_image_a(r), (r / "images" / "README").write_text("hi")),
         {"images/README": "unsupported_file"}, {"images/a.jpg"}),
    # ---- metadata values ----------------------------------------------------------------
    Case("meta_bad_date",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}),
                       with_metadata(r, "file_name,captured_at\na.jpg,2024-05-01 10:00\n"
                                        "b.jpg,yesterday\n")),
         {"images/b.jpg": "bad_metadata_value"}, {"images/a.jpg"}),
    Case("meta_word_in_numeric_column",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None, "c.jpg": None}),
                       with_metadata(r, "file_name,week\na.jpg,1\nb.jpg,2\nc.jpg,three\n")),
         {"images/c.jpg": "bad_metadata_value"}, {"images/a.jpg", "images/b.jpg"}),
    Case("meta_conflicting_duplicate_rows",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}, {"b.txt": BOX}),
                       with_metadata(r, "file_name,camera\na.jpg,north\nb.jpg,north\n"
                                        "b.jpg,south\n")),
         {"images/b.jpg": "conflicting_metadata", "labels/b.txt": "image_quarantined"},
         {"images/a.jpg"}),
    Case("meta_identical_duplicate_rows_count_once",
         lambda r, o: (yolo(r, {"a.jpg": None}),
                       with_metadata(r, "file_name,camera\na.jpg,north\na.jpg,north\n")),
         {}, {"images/a.jpg"}),
    Case("meta_slice_value_outside_allowed_set",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}),
                       with_metadata(r, "file_name,shift\na.jpg,day\nb.jpg,teatime\n")),
         {"images/b.jpg": "bad_slice_value"}, {"images/a.jpg"}, required={"shift": ["day",
                                                                                   "night"]}),
    Case("meta_missing_required_value",
         lambda r, o: (yolo(r, {"a.jpg": None, "b.jpg": None}),
                       with_metadata(r, "file_name,camera\na.jpg,north\nb.jpg,\n")),
         {"images/b.jpg": "missing_slice_value"}, {"images/a.jpg"}, required={"camera": None}),
    Case("meta_latin1_csv",
         lambda r, o: (yolo(r), with_metadata(r, b"file_name,site\nok.jpg,caf\xe9\n")),
         refuse=r"^metadata.csv: the metadata table cannot be read \(UnicodeDecodeError"),
    Case("meta_ragged_csv",
         lambda r, o: (yolo(r), with_metadata(r, 'file_name,site\nok.jpg,"unterminated\n')),
         refuse=r"^metadata.csv: the metadata table cannot be read \(ParserError"),
    Case("meta_empty_csv",
         lambda r, o: (yolo(r), with_metadata(r, b"")),
         refuse=r"^metadata.csv: the metadata table cannot be read \(EmptyDataError"),
    Case("meta_fifo",
         lambda r, o: (yolo(r), os.mkfifo(r / "metadata.csv")),
         refuse=r"^metadata.csv: the metadata table is a FIFO"),
    Case("meta_symlink_outside",
         lambda r, o: (yolo(r), (o / "m.csv").write_text("file_name,site\nok.jpg,x\n"),
                       (r / "metadata.csv").symlink_to(o / "m.csv")),
         refuse=r"^metadata.csv: the metadata table resolves outside the landing folder"),
    Case("meta_without_key_column",
         lambda r, o: (yolo(r), with_metadata(r, "name,site\nok.jpg,x\n")),
         refuse=r"^metadata.csv: the metadata table needs a 'file_name' or 'image_id' column"),
]


@pytest.fixture
def no_hang():
    """A hang (a FIFO opened for reading) fails the test instead of stalling the suite."""
    def on_alarm(signum, frame):
        raise TimeoutError("ingestion blocked")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _present_image_files(root: Path) -> set[str]:
    """Every non-hidden entry under images/ and every image-named entry at the top level, as
    the quarantine would name it (posix, relative, printable). Symlinked folders count once."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root / "images") if (root / "images").is_dir() \
            else []:
        here = Path(dirpath)
        names = filenames + [d for d in dirnames if (here / d).is_symlink()]
        out |= {printable((here / n).relative_to(root).as_posix()) for n in names
                if not n.startswith(".")}
    if (root / "images").is_symlink():
        out |= {f"images/{p.name}" for p in (root / "images").iterdir()}
    out |= {printable(p.name) for p in root.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")}
    return out


@pytest.mark.parametrize("case", SAMPLE_CASES, ids=lambda c: c.id)
def test_sample_case(case: Case, tmp_path, no_hang):
    root, outside = tmp_path / "landing", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    case.build(root, outside)

    def run():
        res = ingest(root, taxonomy=DEFAULT_TAXONOMY)
        val = validate_labels(res.images.assign(split="eval"), res.boxes,
                              required_columns=case.required, prior_quarantine=res.quarantine,
                              max_invalid_fraction=1.0, taxonomy=DEFAULT_TAXONOMY)
        return res, val

    if case.refuse:
        with pytest.raises(PreflightDataError, match=case.refuse) as err:
            run()
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
        return
    res, val = run()
    q = val.quarantine
    for source, code in case.quarantined.items():
        assert code in q.loc[q["source"] == source, "reason_code"].tolist(), \
            q[["source", "reason_code", "reason"]].to_string()
    if case.accepted is not None:
        assert set(val.images["source"]) == case.accepted, q[["source", "reason"]].to_string()
    # the books balance
    s = val.stats
    assert s["images_in"] == s["images_valid"] + s["images_quarantined"]
    assert s["boxes_in"] == s["boxes_valid"] + s["boxes_quarantined"]
    assert res.stats["images_found"] == res.stats["images_ingested"] + res.stats[
        "images_quarantined"]
    # nothing present is silently ignored: each image-like file is accepted or has a reason
    named = set(val.images["source"]) | set(q["source"]) | {f"images/{s}" for s in q["source"]}
    unaccounted = _present_image_files(root) - named
    assert not unaccounted, (unaccounted, q[["source", "reason_code"]].to_string())
    # every reason is one line and names what it is about; every table is storable
    assert q["reason"].str.len().gt(0).all()
    assert not q["reason"].str.contains("\n").any() or "newline" in case.id
    for name, table in (("images", val.images), ("boxes", val.boxes), ("q", q)):
        table.to_parquet(tmp_path / f"{name}.parquet")
        assert len(pd.read_parquet(tmp_path / f"{name}.parquet")) == len(table)
    # nothing outside the landing folder was read into the tables
    assert all(Path(fs_path(p)).resolve().is_relative_to(root.resolve())
               for p in val.images["path"])
    # and every kept image can be opened again from its stored path (later stages do)
    assert all(read_image_bgr(p) is not None for p in
               pd.read_parquet(tmp_path / "images.parquet")["path"])


# ------------------------------------------------------------------------ landed batches
def _batch(landing: Path, name: str = "week_05", n: int = 2) -> Path:
    folder = landing / name
    yolo(folder, {f"f{i}.jpg": None for i in range(n)}, {f"f{i}.txt": BOX for i in range(n)})
    write_manifest(folder)
    mark_complete(folder)
    return folder


def _edit_manifest(folder: Path, change: Callable[[list[dict]], None]) -> None:
    doc = json.loads((folder / "manifest.json").read_text())
    change(doc["files"])
    (folder / "manifest.json").write_text(json.dumps(doc))
    mark_complete(folder)  # the producer re-signed it: only the entries are hostile


def _rewrite(folder: Path, rel: str, data: bytes) -> None:
    (folder / rel).write_bytes(data)


@dataclass
class BatchCase:
    id: str
    build: Callable[[Path, Path], Path]  # (landing zone, outside) -> the batch folder
    complete: bool
    reason: str = ""  # regex on the refusal reason


BATCH_CASES = [
    BatchCase("complete_batch_is_accepted", lambda z, o: _batch(z), True, r"^complete: \d+ files"),
    BatchCase("no_marker_still_being_written",
              lambda z, o: ((b := _batch(z)), (b / "_COMPLETE").unlink(), b)[-1], False,
              r"no _COMPLETE marker .* still being written"),
    BatchCase("file_shorter_than_manifest_says",
              lambda z, o: ((b := _batch(z)), _rewrite(b, "images/f0.jpg", b"\xff\xd8"), b)[-1],
              False, r"1 file\(s\) differ: images/f0.jpg \(2 bytes"),
    BatchCase("listed_file_missing",
              lambda z, o: ((b := _batch(z)), (b / "labels/f1.txt").unlink(), b)[-1], False,
              r"1 file\(s\) listed in manifest.json missing: labels/f1.txt"),
    BatchCase("unlisted_file_still_being_copied",
              lambda z, o: ((b := _batch(z)), (b / "images/late.jpg").write_bytes(jpeg(7)),
                            b)[-1], False, r"1 file\(s\) not listed in manifest.json .*late.jpg"),
    BatchCase("manifest_entry_dotdot",
              lambda z, o: ((b := _batch(z)), _edit_manifest(b, lambda f: f.append(
                  {"path": "../../etc/passwd", "size": 1})), b)[-1], False,
              r"refused: \.\./\.\./etc/passwd \(the path leaves the landing folder"),
    BatchCase("manifest_entry_absolute",
              lambda z, o: ((b := _batch(z)), _edit_manifest(b, lambda f: f.append(
                  {"path": "/etc/hostname", "size": 1})), b)[-1], False,
              r"refused: /etc/hostname \(the path leaves"),
    BatchCase("manifest_entry_symlink_outside",
              lambda z, o: ((b := _batch(z)), (o / "s.jpg").write_bytes(b"12"),
                            (b / "images/f0.jpg").unlink(),
                            (b / "images/f0.jpg").symlink_to(o / "s.jpg"), b)[-1], False,
              r"refused: images/f0.jpg \(resolves outside"),
    BatchCase("manifest_entry_fifo",
              lambda z, o: ((b := _batch(z)), (b / "images/f0.jpg").unlink(),
                            os.mkfifo(b / "images/f0.jpg"), b)[-1], False,
              r"refused: images/f0.jpg \(is a FIFO"),
    BatchCase("manifest_is_fifo",
              lambda z, o: ((b := _batch(z)), (b / "manifest.json").unlink(),
                            os.mkfifo(b / "manifest.json"), b)[-1], False,
              r"^manifest.json: is a FIFO"),
    BatchCase("manifest_garbage",
              lambda z, o: ((b := _batch(z)), (b / "manifest.json").write_text("{nope"),
                            b)[-1], False, r"manifest.json cannot be read \(JSONDecodeError"),
    BatchCase("manifest_changed_after_marker",
              lambda z, o: ((b := _batch(z)), (b / "manifest.json").write_text(
                  (b / "manifest.json").read_text() + " "), b)[-1], False,
              r"manifest.json changed after _COMPLETE was written"),
    BatchCase("batch_folder_is_symlink",
              lambda z, o: ((b := _batch(o, "real")), (z / "week_09").symlink_to(b),
                            z / "week_09")[-1], False, r"is a symlink"),
    BatchCase("batch_folder_name_not_allowed",
              lambda z, o: _batch(z, "bad name;rm"), False, r"not a valid batch name"),
]


@pytest.mark.parametrize("case", BATCH_CASES, ids=lambda c: c.id)
def test_batch_case(case: BatchCase, tmp_path, no_hang):
    zone, outside = tmp_path / "landing", tmp_path / "outside"
    zone.mkdir()
    outside.mkdir()
    folder = case.build(zone, outside)
    status = {s.name: s for s in scan_landing(zone)}[folder.name]
    assert status.complete is case.complete, status.reason
    assert re_search(case.reason, status.reason), status.reason
    assert "\n" not in status.reason
    if case.complete:  # an accepted batch ingests with every file accounted for
        res = ingest(batch_folder(zone, folder.name), taxonomy=DEFAULT_TAXONOMY)
        assert res.stats["images_ingested"] == 2 and len(res.quarantine) == 0
    elif folder.is_symlink() or not folder.name.replace("_", "").isalnum():
        with pytest.raises(IngestError, match=r"symlink|not a valid batch name"):
            batch_folder(zone, folder.name)  # the monitoring asset refuses it too
    else:
        assert batch_is_complete(folder)[0] is False


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_batch_folder_refuses_names_that_climb(tmp_path):
    for name in ("..", "../x", "/etc", ".hidden", "a/b"):
        with pytest.raises(IngestError, match="not a valid batch name"):
            batch_folder(tmp_path, name)


def test_corpus_size():
    """The issue asks for at least 40 cases beyond tests/test_bad_input.py."""
    assert len(SAMPLE_CASES) + len(BATCH_CASES) >= 40
