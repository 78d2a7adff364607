"""`preflight demo`'s own parts: the first result it prints while the pass goes on, and
``--all-candidates`` (the full candidates file instead of the demo's two)."""

from __future__ import annotations

import dagster as dg

from preflight import environment
from preflight.config import DEFAULT_CANDIDATES_PATH, DEMO_CANDIDATES_PATH


def test_first_result_shows_the_candidate_its_numbers_and_its_failure_table():
    from pipeline.demo import first_result_text

    table = "| slice | recall |\n|---|---|\n| lighting=dim | 0.41 |"
    mat = dg.AssetMaterialization(asset_key=["cand_a", "offtheshelf_eval"], metadata={
        "AP50": 0.61, "recall": 0.55, "precision": 0.7,
        "top_failing_slices": dg.MetadataValue.md(table)})
    text = first_result_text(mat, 123.4)
    assert "after 123 s" in text and "cand_a off-the-shelf" in text
    assert "AP50 0.610" in text and "recall 0.550" in text and table in text


def test_all_candidates_swaps_only_the_demo_subset(monkeypatch, tmp_path):
    from pipeline.demo import _use_all_candidates

    monkeypatch.delenv("PREFLIGHT_CANDIDATES", raising=False)
    monkeypatch.delenv("PREFLIGHT_CONFIG", raising=False)  # the shipped settings: the demo's two
    _use_all_candidates()
    assert environment.candidates_file() == str(DEFAULT_CANDIDATES_PATH.resolve())
    assert DEMO_CANDIDATES_PATH.is_file()

    own = tmp_path / "mine.yaml"  # a file of one's own already is the list: left as it is
    own.write_text("version: 1\ncandidates: []\n")
    monkeypatch.setenv("PREFLIGHT_CANDIDATES", str(own))
    _use_all_candidates()
    assert environment.candidates_file() == str(own)
