"""File names in any encoding: how the tables keep a path, and how a later stage opens it again.

On Linux a file name is bytes; one that is not valid UTF-8 (a Latin-1 / CP1252 name unpacked from
an old archive, ``b"caf\\xe9.jpg"``) reaches Python as text with lone surrogates
(``surrogateescape``), which Parquet, JSON logs and MLflow cannot store. So a table keeps two forms:

* ``path`` -- :func:`stored_path`: the path itself when it is valid UTF-8 (every ordinary name,
  unchanged), else a ``file://`` URI with the name's bytes percent-encoded (RFC 8089). A resolved
  path is absolute, so it never starts with ``file://`` and the two cannot be confused.
  :func:`fs_path` turns either back into the exact path to open, byte for byte.
* ``file_name`` / ``source`` -- :func:`~preflight.data.errors.printable`: for people, the raw bytes
  shown escaped (``caf\\xe9.jpg``).

Only a name that no file system can hold is refused: a NUL byte, or a lone surrogate that stands
for no byte (``"\\ud800"`` written in a JSON file).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import cv2
import numpy as np

FILE_URI = "file://"
#: the legacy 8-bit encodings a name in an annotations file may have been written to disk in
LEGACY_ENCODINGS = ("cp1252", "latin-1")


def stored_path(path: str | os.PathLike) -> str:
    """The text a table keeps for ``path`` (valid UTF-8, reversible with :func:`fs_path`)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return FILE_URI + quote(os.fsencode(text), safe="/")


def fs_path(stored: str | os.PathLike) -> str:
    """The path to open for a stored ``path`` value (the inverse of :func:`stored_path`)."""
    text = os.fspath(stored)
    if text.startswith(FILE_URI):
        return os.fsdecode(unquote_to_bytes(text[len(FILE_URI):]))
    return text


def unrepresentable(name: str) -> str | None:
    """Why ``name`` can name no file (a phrase), or None when the file system can take it."""
    if "\x00" in name:
        return "the name contains a NUL byte"
    try:
        os.fsencode(name)
    except UnicodeEncodeError as exc:
        bad = name[exc.start:exc.end].encode("utf-8", "backslashreplace").decode("ascii")
        return (f"the name holds {bad}, a lone surrogate that stands for no character or byte; "
                f"fix the name in the annotations")
    return None


def name_variants(name: str) -> list[str]:
    """``name`` and the other spellings the same file may have on disk: both Unicode normal forms
    (macOS writes NFD, most tools NFC) and the bytes a legacy 8-bit encoding gives it (a Windows
    archive unpacked on Linux keeps ``café`` as the CP1252 byte ``\\xe9``). First is ``name``."""
    forms = [name, unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)]
    for form in list(forms):
        for encoding in LEGACY_ENCODINGS:
            try:
                forms.append(os.fsdecode(form.encode(encoding)))
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
    return list(dict.fromkeys(forms))


def read_image_bgr(path: str | os.PathLike) -> np.ndarray | None:
    """A stored or plain path's image as BGR ``uint8`` (None when it does not decode). Decoded
    from the file's bytes, as ingestion decodes them, so any file name works."""
    try:
        data = Path(fs_path(path)).read_bytes()
    except OSError:
        return None
    if not data:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None or bgr.size == 0 else bgr
