"""The landing zone: labelled batches arrive as sub-folders; only complete ones count.

A batch is complete when its completion marker ``_COMPLETE`` exists (written last by the
producer) and, if it carries a ``manifest.json`` (``{"files": [{"path", "size", "sha256"}]}``),
every listed file exists with that size (and hash, with ``verify_hashes``) and the manifest is
the one the marker was written for. A half-copied batch is therefore never ingested: the sensor
sees it again on its next tick. ``preflight synth --week N`` writes batches this way.

A batch is refused (never complete, the reason says why, nothing in it is opened) when its folder
is a symlink, when a manifest entry names a path outside the batch (absolute, ``..``, or through
a symlink) or something that is not a regular file (a FIFO, a device), or when a non-hidden file
is present that the manifest does not list (a second writer still copying, or a stray file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from preflight.data.errors import printable

COMPLETE_MARKER = "_COMPLETE"
INCOMPLETE_MARKER = "_INCOMPLETE"
MANIFEST_NAME = "manifest.json"
_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class BatchStatus:
    name: str
    path: Path
    complete: bool
    reason: str


def scan_landing(landing_dir: str | Path, *, verify_hashes: bool = False) -> list[BatchStatus]:
    """Every sub-folder of the landing zone with its status, sorted by name."""
    root = Path(landing_dir)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if path.is_symlink():
            out.append(BatchStatus(path.name, path, False, f"batch folder {path.name!r} is a "
                                   "symlink; batches must be real folders in the landing zone"))
            continue
        if not _BATCH_NAME.match(path.name):
            out.append(BatchStatus(path.name, path, False, f"folder name {path.name!r} is not "
                                   "a valid batch name (letters, digits, '_', '.', '-')"))
            continue
        ok, reason = batch_is_complete(path, verify_hashes=verify_hashes)
        out.append(BatchStatus(path.name, path, ok, reason))
    return out


# ----------------------------------------------------------------------------- completeness
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``manifest.json``: every file under ``directory`` (posix relative path, size,
    sha256), except the manifest itself and the completion markers. Returns its path."""
    root = Path(directory)
    skip = {MANIFEST_NAME, COMPLETE_MARKER, INCOMPLETE_MARKER}
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_dir() or (p.parent == root and p.name in skip):
            continue
        entries.append({"path": p.relative_to(root).as_posix(), "size": p.stat().st_size,
                        "sha256": _sha256(p)})
    doc = {"version": 1, "n_files": len(entries),
           "total_bytes": int(sum(e["size"] for e in entries)), **(extra or {}),
           "files": entries}
    path = root / MANIFEST_NAME
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def mark_complete(directory: str | Path) -> Path:
    """Write the ``_COMPLETE`` marker (the manifest's sha256) after the manifest."""
    root = Path(directory)
    manifest = root / MANIFEST_NAME
    marker = root / COMPLETE_MARKER
    marker.write_text(json.dumps({"manifest_sha256": _sha256(manifest)}) + "\n",
                      encoding="utf-8")
    return marker


def _unlisted(root: Path, listed: set[str]) -> list[str]:
    """Non-hidden files (or links, FIFOs, ...) under ``root`` the manifest does not name."""
    skip = {MANIFEST_NAME, COMPLETE_MARKER, INCOMPLETE_MARKER}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        names = filenames + [d for d in dirnames if (here / d).is_symlink()]
        for name in names:
            relative = (here / name).relative_to(root).as_posix()
            if name.startswith(".") or (here == root and name in skip):
                continue
            if relative not in listed:
                out.append(printable(relative))
    return sorted(out)


def batch_folder(landing_dir: str | Path, name: str) -> Path:
    """The folder of batch ``name``: a real sub-folder of the landing zone, else ``IngestError``
    (a symlinked or oddly named batch is never read, whatever asked for it)."""
    from preflight.data.errors import IngestError

    root = Path(landing_dir).resolve()
    path = root / name
    if not _BATCH_NAME.match(name):
        raise IngestError(f"batch {printable(name)!r}: not a valid batch name (letters, digits, "
                          f"'_', '.', '-')")
    if path.is_symlink():
        raise IngestError(f"batch {name}: {path} is a symlink; batches must be real folders "
                          f"in the landing zone")
    if not path.is_dir():
        raise IngestError(f"batch {name}: {path} does not exist or is not a folder")
    return path


def batch_is_complete(directory: str | Path, *, verify_hashes: bool = False) -> tuple[bool, str]:
    """``(True, summary)`` when ``_COMPLETE`` exists and every file of ``manifest.json`` exists
    with its listed size (and sha256 when ``verify_hashes``); else ``(False, what is missing)``."""
    from preflight.data.formats import Refusal, locate, read_regular

    root = Path(directory)
    if not root.is_dir():
        return False, f"{root} does not exist or is not a folder"
    marker, manifest = root / COMPLETE_MARKER, root / MANIFEST_NAME
    if not marker.is_file():
        return False, (f"no {COMPLETE_MARKER} marker in {root}: the batch is still being written "
                       f"or its writer was interrupted")
    if not os.path.lexists(manifest):
        return True, f"complete: {COMPLETE_MARKER} marker (no {MANIFEST_NAME} to check)"
    real = root.resolve()
    found = locate(real, MANIFEST_NAME)
    if isinstance(found, Refusal):
        return False, f"{MANIFEST_NAME}: {found.why}"
    try:
        doc = json.loads(read_regular(found).decode("utf-8"))
        entries = [(str(e["path"]), int(e["size"]), e.get("sha256")) for e in doc["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{manifest} cannot be read ({type(exc).__name__}: {exc})"
    try:
        want = json.loads(marker.read_text(encoding="utf-8") or "{}").get("manifest_sha256")
    except (OSError, ValueError, AttributeError):
        want = None  # a bare (e.g. touched) marker is accepted
    if want and want != _sha256(manifest):
        return False, f"{MANIFEST_NAME} changed after {COMPLETE_MARKER} was written"
    missing, wrong, refused = [], [], []
    for rel_path, size, sha in entries:
        p = locate(real, rel_path, listed=True)  # as written: `\\` is a character on Linux
        if isinstance(p, Refusal) and p.code == "missing_file" and "\\" in rel_path:
            p = locate(real, rel_path)  # a manifest written on Windows
        if isinstance(p, Refusal):
            (missing if p.code == "missing_file" else refused).append(
                rel_path if p.code == "missing_file" else f"{printable(rel_path)} ({p.why})")
            continue
        if not p.is_file():
            missing.append(rel_path)
        elif p.stat().st_size != size:
            wrong.append(f"{rel_path} ({p.stat().st_size} bytes, manifest says {size})")
        elif verify_hashes and sha and _sha256(p) != sha:
            wrong.append(f"{rel_path} (sha256 differs from the manifest)")
    if refused:
        return False, (f"{len(refused)} {MANIFEST_NAME} entr(y/ies) refused: "
                       + ", ".join(refused[:5]) + (" ..." if len(refused) > 5 else ""))
    unlisted = _unlisted(root, {PurePosixPath(e[0]).as_posix() for e in entries})
    if unlisted:
        return False, (f"{len(unlisted)} file(s) not listed in {MANIFEST_NAME} (still being "
                       f"written?): " + ", ".join(unlisted[:5])
                       + (" ..." if len(unlisted) > 5 else ""))
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} file(s) listed in {MANIFEST_NAME} missing: "
                         + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        if wrong:
            parts.append(f"{len(wrong)} file(s) differ: " + ", ".join(wrong[:5])
                         + (" ..." if len(wrong) > 5 else ""))
        return False, "; ".join(parts)
    return True, f"complete: {len(entries)} files, {sum(e[1] for e in entries)} bytes"
