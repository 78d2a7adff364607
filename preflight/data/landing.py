"""The landing zone: labelled batches arrive as sub-folders; only complete ones count.

A batch is complete when its completion marker ``_COMPLETE`` exists (written last by the
producer) and, if it carries a ``manifest.json`` (``{"files": [{"path", "size", "sha256"}]}``),
every listed file exists with that size (and hash, with ``verify_hashes``) and the manifest is
the one the marker was written for. A half-copied batch is therefore never ingested: the sensor
sees it again on its next tick. ``preflight synth --week N`` writes batches this way.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def batch_is_complete(directory: str | Path, *, verify_hashes: bool = False) -> tuple[bool, str]:
    """``(True, summary)`` when ``_COMPLETE`` exists and every file of ``manifest.json`` exists
    with its listed size (and sha256 when ``verify_hashes``); else ``(False, what is missing)``."""
    root = Path(directory)
    if not root.is_dir():
        return False, f"{root} does not exist or is not a folder"
    marker, manifest = root / COMPLETE_MARKER, root / MANIFEST_NAME
    if not marker.is_file():
        return False, (f"no {COMPLETE_MARKER} marker in {root}: the batch is still being written "
                       f"or its writer was interrupted")
    if not manifest.is_file():
        return True, f"complete: {COMPLETE_MARKER} marker (no {MANIFEST_NAME} to check)"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        entries = [(str(e["path"]), int(e["size"]), e.get("sha256")) for e in doc["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{manifest} cannot be read ({type(exc).__name__}: {exc})"
    try:
        want = json.loads(marker.read_text(encoding="utf-8") or "{}").get("manifest_sha256")
    except (OSError, ValueError, AttributeError):
        want = None  # a bare (e.g. touched) marker is accepted
    if want and want != _sha256(manifest):
        return False, f"{MANIFEST_NAME} changed after {COMPLETE_MARKER} was written"
    missing, wrong = [], []
    for rel_path, size, sha in entries:
        p = root / rel_path
        if not p.is_file():
            missing.append(rel_path)
        elif p.stat().st_size != size:
            wrong.append(f"{rel_path} ({p.stat().st_size} bytes, manifest says {size})")
        elif verify_hashes and sha and _sha256(p) != sha:
            wrong.append(f"{rel_path} (sha256 differs from the manifest)")
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
