"""The library learns the world from the data and the settings: no library code (code, comments
or docstrings) names a class, camera or slice value of the embedded synthetic world. Those live
only in the generator (``preflight/synth/``) and in ``config/``."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("preflight", "assets", "pipeline", "resources")
#: the generator may name its own world
GENERATOR = re.compile(r"^preflight/synth/[^/]*\.py$")

#: names that mean the embedded world wherever they appear (whole words, any case)
DISTINCT = re.compile(
    r"\b(forklift|pallet|sku_a|sku_b|sku_new|cam\d+|night|dirty|dim)\b", re.IGNORECASE)
#: ordinary English words that are embedded-world names when used as a value: flagged as a whole
#: string literal ("person"), a code span (``box``), a slice (=heavy) or a class (class box)
ORDINARY = ("person", "box", "heavy", "bright")
_WORDS = "|".join(ORDINARY)
VALUE_USE = re.compile(
    rf"""(["'`])(?P<a>{_WORDS})\1|=(?P<b>{_WORDS})\b|(?<![\w-])class (?P<c>{_WORDS})\b""")
#: (file, word) -> why the library itself uses the word as a value there
ALLOWED: dict[tuple[str, str], str] = {
    ("preflight/data/errors.py", "box"): "quarantine level of one label row (a box)",
    ("preflight/data/formats.py", "box"): "quarantine level",
    ("preflight/data/ingest.py", "box"): "quarantine level",
    ("preflight/data/validate.py", "box"): "quarantine level",
}


def library_files() -> list[Path]:
    files = []
    for top in LIBRARY:
        for path in sorted((REPO / top).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_file() and path.suffix in (".py", ".yaml", ".yml", ".md", ".json") \
                    and "__pycache__" not in rel and not GENERATOR.match(rel):
                files.append(path)
    return files


def embedded_names(rel: str, text: str) -> list[str]:
    """``file:line: word`` for every embedded-world name in one file's text."""
    hits = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in DISTINCT.finditer(line):
            hits.append(f"{rel}:{n}: {m.group(0)!r} in {line.strip()[:90]!r}")
        for m in VALUE_USE.finditer(line):
            word = m.group("a") or m.group("b") or m.group("c")
            if (rel, word) not in ALLOWED:
                hits.append(f"{rel}:{n}: {word!r} in {line.strip()[:90]!r}")
    return hits


def test_the_check_catches_names_in_code_comments_and_docstrings():
    text = ('"""Map ``sku_a`` to a crate."""\n'
            'x = "person"  # a class\n'
            'if key == "occluded_bin" and value == "heavy": pass\n'
            '# lighting=dim fails\n'
            'label = "box-level"  # not a value use\n'
            'nightly = "cam"  # no whole word\n')
    hits = embedded_names("preflight/x.py", text)
    assert [h.split(": ")[1].split(" in ")[0] for h in hits] == ["'sku_a'", "'person'", "'heavy'", "'dim'"]
    assert embedded_names("preflight/data/errors.py", 'level = "box"') == []


def test_library_code_names_nothing_of_the_embedded_world():
    hits = []
    for path in library_files():
        rel = path.relative_to(REPO).as_posix()
        hits += embedded_names(rel, path.read_text(encoding="utf-8", errors="replace"))
    assert not hits, ("names of the embedded world in library code (they belong in the "
                      "generator or config/):\n" + "\n".join(hits))
