"""The landing zone: labelled batches arrive as sub-folders; only complete ones count.

A batch is complete when its completion marker ``_COMPLETE`` exists (written last by the
producer) and, if it carries a ``manifest.json`` (``{"files": [{"path", "size", "sha256"?}]}``),
every listed file exists with that size (and hash, when ``verify_hashes``). A half-copied batch
is therefore never ingested: the sensor simply sees it again on its next tick.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "_COMPLETE"
MANIFEST = "manifest.json"
_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class BatchStatus:
    name: str
    path: Path
    complete: bool
    reason: str  # why not complete ("" when complete)


def batch_status(folder: str | Path, *, verify_hashes: bool = False) -> BatchStatus:
    """Whether ``folder`` is a complete batch, and if not, what is missing."""
    path = Path(folder)
    name = path.name
    if not _BATCH_NAME.match(name):
        return BatchStatus(name, path, False, f"batch folder name {name!r} is not a valid "
                           "partition key (letters, digits, '_', '.', '-')")
    if not (path / MARKER).is_file():
        return BatchStatus(name, path, False, f"no {MARKER} marker yet (still being copied?)")
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            return BatchStatus(name, path, False, f"{MANIFEST} is unreadable: {exc}")
        for entry in listed:
            target = (path / entry["path"]).resolve()
            if path.resolve() not in target.parents:
                return BatchStatus(name, path, False, f"{MANIFEST} lists {entry['path']!r}, "
                                   "outside the batch folder")
            if not target.is_file():
                return BatchStatus(name, path, False, f"{entry['path']} is missing")
            if target.stat().st_size != int(entry["size"]):
                return BatchStatus(name, path, False, f"{entry['path']} has "
                                   f"{target.stat().st_size} bytes, manifest says {entry['size']}")
            if verify_hashes and entry.get("sha256") and sha256(target) != entry["sha256"]:
                return BatchStatus(name, path, False, f"{entry['path']} does not match its sha256")
    return BatchStatus(name, path, True, "")


def scan_landing(landing_dir: str | Path, *, verify_hashes: bool = False) -> list[BatchStatus]:
    """Every sub-folder of the landing zone with its status, sorted by name."""
    root = Path(landing_dir)
    if not root.is_dir():
        return []
    return [batch_status(p, verify_hashes=verify_hashes)
            for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> Path:
    """List every file of a batch (size, sha256) in ``manifest.json``, then write the marker
    last: what a producer runs after copying a batch."""
    path = Path(folder)
    files = [{"path": p.relative_to(path).as_posix(), "size": p.stat().st_size,
              "sha256": sha256(p)}
             for p in sorted(path.rglob("*")) if p.is_file() and p.name not in (MARKER, MANIFEST)]
    (path / MANIFEST).write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")
    (path / MARKER).write_text("complete\n", encoding="utf-8")
    return path / MANIFEST
