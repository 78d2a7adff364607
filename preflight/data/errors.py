"""Errors and the quarantine table shared by ingestion and label validation.

Nothing read from a landing folder is ever dropped silently: whatever cannot be used becomes one
row of the quarantine table (``QUARANTINE_COLUMNS``) with a short ``reason_code`` and a sentence
naming the file (and line) a user can act on.

``level`` says what a row stands for: ``image`` (one image, and so not in the images table),
``box`` (one label line / COCO annotation) or ``file`` (a whole file that is not an image or a
label line: an orphan label file, unreadable JSON or metadata, ...). Counting rows by level keeps
the books: images found = images kept + image rows; boxes found = boxes kept + box rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source",
    "image_id",
    "line",
    "reason_code",
    "reason",
    "stage",
    "level",
)


class PreflightDataError(ValueError):
    """Base class for data errors raised by ``preflight.data``."""


class IngestError(PreflightDataError):
    """The landing folder cannot be ingested at all (missing folder, bad arguments)."""


class LabelValidationError(PreflightDataError):
    """Too large a share of the sample failed validation.

    ``stats`` and ``quarantine`` hold what the validation found, so a caller can still record
    them before failing the run.
    """

    def __init__(self, message: str, *, stats: dict | None = None,
                 quarantine: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.stats = stats or {}
        self.quarantine = quarantine if quarantine is not None else empty_quarantine()


@dataclass(frozen=True)
class QuarantineRecord:
    """One quarantined item. ``source`` is relative to the landing folder (posix)."""

    source: str
    reason_code: str
    reason: str
    stage: str = "ingestion"
    level: str = "box"
    image_id: str | None = None
    line: int | None = None


def printable(text: str) -> str:
    """``text`` as valid UTF-8 (Parquet and logs need it): a file name whose bytes were not UTF-8
    (Python keeps them as lone surrogates) shows its raw bytes escaped, ``caf\\xe9.jpg``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate from JSON ("\\ud800"), not from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def where(source: str, line: int | None = None, annotation: object | None = None) -> str:
    """``"labels/x.txt line 3"`` / ``"annotations.json annotation 17"`` / ``"images/x.jpg"``."""
    if line is not None and not pd.isna(line):
        return f"{source} line {int(line)}"
    if annotation is not None and not pd.isna(annotation):
        return f"{source} annotation {annotation}"
    return source


def empty_quarantine() -> pd.DataFrame:
    return quarantine_frame([])


def quarantine_frame(records: Iterable[QuarantineRecord]) -> pd.DataFrame:
    """The quarantine table, with stable dtypes even when empty."""
    rows = [{k: printable(v) if isinstance(v, str) else v for k, v in asdict(r).items()}
            for r in records]
    df = pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))
    df["line"] = df["line"].astype("Int64")
    for col in ("source", "image_id", "reason_code", "reason", "stage", "level"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df.reset_index(drop=True)


def concat_quarantine(*frames: pd.DataFrame | None) -> pd.DataFrame:
    parts = [f for f in frames if f is not None and len(f)]
    if not parts:
        return empty_quarantine()
    df = pd.concat([p[list(QUARANTINE_COLUMNS)] for p in parts], ignore_index=True)
    df["line"] = df["line"].astype("Int64")
    return df


def reason_counts(quarantine: pd.DataFrame, level: str | None = None) -> dict[str, int]:
    q = quarantine if level is None else quarantine[quarantine["level"] == level]
    return dict(Counter(q["reason_code"]).most_common())
