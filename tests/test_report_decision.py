"""The decision report: three files, a self-contained HTML page, a JSON that round-trips."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from preflight.decide import Bar, CandidateEvidence, decide, fit_learning_curve
from preflight.report.decision import (
    before_after_chart,
    learning_curve_chart,
    write_decision_report,
)

ALL = "__all__"
DIM = ("lighting", "dim", "recall")
SMALL = ("size_bin", "small", "recall")


def table(overrides=None, thin=()):
    rows = {(ALL, ALL, "recall"): (0.8, 0.76, 0.84), (ALL, ALL, "precision"): (0.85, 0.8, 0.9),
            (ALL, ALL, "recall.sku_a"): (0.75, 0.68, 0.81), DIM: (0.7, 0.62, 0.77),
            SMALL: (0.65, 0.57, 0.72), ("camera", "c9", "recall"): (0.3, 0.05, 0.7),
            **(overrides or {})}
    return pd.DataFrame([{"slice_column": c, "slice_value": v, "metric": m, "value": x,
                          "ci_low": lo, "ci_high": hi, "n_images": 5 if v == "c9" else 200,
                          "n_boxes": 8 if v == "c9" else 400, "thin": v == "c9"}
                         for (c, v, m), (x, lo, hi) in rows.items()])


@pytest.fixture(scope="module")
def decision_and_points():
    n = np.array([250.0, 500.0, 1000.0])
    values = 0.6 - 4.0 * n ** -0.5
    fit = fit_learning_curve(n, values, n_boot=50)
    points = pd.DataFrame({"n_images_train": n, "value": values, "ci_low": values - 0.03,
                           "ci_high": values + 0.03})
    nano = CandidateEvidence(
        name="nano", offtheshelf=table({DIM: (0.3, 0.25, 0.35), (ALL, ALL, "recall.sku_a"):
                                        (0.3, 0.24, 0.36)}),
        finetuned=table({DIM: (0.45, 0.42, 0.46)}), latency_p99_ms=40.0, daily_cost=120.0,
        input_size=320, learning_curves={DIM: fit})
    small = CandidateEvidence(
        name="small", offtheshelf=table({SMALL: (0.2, 0.14, 0.27)}),
        finetuned=table({SMALL: (0.22, 0.16, 0.29)}), latency_p99_ms=300.0, daily_cost=90.0,
        input_size=320, size_rank=1)
    return decide([nano, small], Bar()), points, fit


def test_charts_are_written(tmp_path, decision_and_points):
    decision, points, fit = decision_and_points
    ba = before_after_chart(decision.slices, tmp_path / "ba.png", candidate="nano")
    lc = learning_curve_chart(points, fit, 0.5, tmp_path / "lc.png")
    flat = fit_learning_curve([250, 500, 1000], [0.4, 0.4, 0.4], n_boot=0)
    lc2 = learning_curve_chart([(250, 0.4), (500, 0.4), (1000, 0.4)], flat, 0.5,
                               tmp_path / "flat.png")
    for p in (ba, lc, lc2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_files_headline_html_and_json(tmp_path, decision_and_points):
    decision, points, fit = decision_and_points
    plots = {"before_after_nano": before_after_chart(decision.slices, tmp_path / "ba.png",
                                                     candidate="nano"),
             "learning_curve_dim": learning_curve_chart(points, fit, 0.5, tmp_path / "lc.png")}
    extra = {"Operational cost by shift": pd.DataFrame({"shift": ["day", "night"],
                                                        "daily cost": [80.5, 140.25]})}
    paths = write_decision_report(decision, tmp_path / "report", evidence=extra, plots=plots,
                                  title="Warehouse decision")
    assert set(paths) == {"markdown", "html", "json"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())

    md = paths["markdown"].read_text(encoding="utf-8")
    first_paragraph = md.split("\n\n")[1]
    assert decision.overall.verdict == "collect more data first"
    assert "Verdict: collect more data first" in first_paragraph and "nano" in first_paragraph
    assert "No model ships" in first_paragraph and "does not move" in first_paragraph
    for section in ("## Evidence per candidate", "## Failing slices: route and remedy",
                    "## Look-alike classes", "## Fixed vs not fixed by fine-tuning",
                    "## Learning curves", "## Stress", "## Latency and cost",
                    "## Not enough evidence", "### Label plan (evaluation data)",
                    "## Operational cost by shift"):
        assert section in md
    assert "0.45 [0.42, 0.46]" in md and "model change" in md and "data collection" in md
    assert "class sku_a (recall)" in md.split("### Fixed by fine-tuning")[1]
    assert "camera=c9 (recall)" in md.split("## Not enough evidence")[1]
    assert "](plots/learning_curve_dim.png)" in md
    assert (tmp_path / "report" / "plots" / "learning_curve_dim.png").is_file()

    page = paths["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 2
    assert "<style>" in page and "<table" in page
    assert "Verdict: collect more data first" in page

    payload = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert payload == decision.to_dict()
    assert payload["overall"]["candidate"] == "nano"


def _section(md: str, heading: str) -> str:
    return md.split(heading, 1)[1].split("\n## ", 1)[0]


def test_report_sentences_match_its_tables(tmp_path, decision_and_points):
    decision, _, _ = decision_and_points
    md = write_decision_report(decision, tmp_path)["markdown"].read_text(encoding="utf-8")
    failing = _section(md, "## Failing slices: route and remedy")
    rows = [line for line in failing.splitlines() if line.startswith("| ")][1:]
    routes = {"data collection": 0, "model change": 0, "measure first": 0, "re-run first": 0}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        routes[cells[7]] += 1
    m = re.search(r"(\d+) failing row\(s\): (.*)\.", failing)
    assert int(m.group(1)) == len(rows) == sum(routes.values())
    said = dict((v, int(k)) for k, v in re.findall(r"(\d+) to ([a-z ()]+?)(?:,|$)", m.group(2)))
    assert said.get("data collection", 0) == routes["data collection"]
    assert said.get("a model change", 0) == routes["model change"]
    assert said.get("a measurement first (unresolved)", 0) == routes["measure first"]
    assert said.get("a re-run first (uncertain)", 0) == routes["re-run first"]
    # the not-enough-evidence rows state the frames that would decide them
    assert "frames needed" in _section(md, "## Not enough evidence")


def test_report_without_plots_or_fine_tuning(tmp_path):
    c = CandidateEvidence(name="nano", offtheshelf=table(), latency_p99_ms=40.0)
    decision = decide([c], Bar())
    paths = write_decision_report(decision, tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert ("**Verdict: ship off-the-shelf.** Chosen model: **nano** (off-the-shelf); it becomes "
            "the `champion`.") in md
    assert "No failing slice." in md and "No learning curve was fitted." in md
    assert "data:image" not in paths["html"].read_text(encoding="utf-8")


def test_missing_plot_file_raises(tmp_path, decision_and_points):
    decision, _, _ = decision_and_points
    with pytest.raises(FileNotFoundError, match="nope.png"):
        write_decision_report(decision, tmp_path, plots={"x": tmp_path / "nope.png"})


def test_close_rows_are_uncertain_and_named_in_the_report(tmp_path):
    """A fine-tuned row 0.01 under the bar (within the training noise) and a fixed row 0.01
    over it: both could flip on a re-run, so neither counts as data-solvable or
    architecture-bound; the report lists them as close and its counts agree with its tables."""
    near_fail = (0.49, 0.48, 0.495)
    c = CandidateEvidence(
        name="nano", offtheshelf=table({DIM: (0.3, 0.25, 0.35), SMALL: (0.3, 0.25, 0.35)}),
        finetuned=table({DIM: near_fail, SMALL: (0.52, 0.505, 0.54)}), latency_p99_ms=40.0,
        input_size=320)
    decision = decide([c], Bar())
    v = decision.candidate("nano")
    assert v.verdict == "measure first" and v.n_fail == v.n_uncertain == 1
    assert v.n_data_solvable == v.n_architecture_bound == 0
    s = decision.slices.set_index(["stage", "slice_column", "slice_value", "metric"])
    for key in (DIM, SMALL):
        assert s.loc[("fine-tuned", *key), "failure_kind"] == "uncertain"
        assert s.loc[("fine-tuned", *key), "route"] == "re-run first"
        assert bool(s.loc[("fine-tuned", *key), "close"])
    assert any("within the training noise" in r for r in v.reasons)
    md = write_decision_report(decision, tmp_path)["markdown"].read_text(encoding="utf-8")
    close = _section(md, "## Close to the bar (could flip on a re-run)")
    assert "lighting=dim (recall)" in close and "size_bin=small (recall)" in close
    failing = _section(md, "## Failing slices: route and remedy")
    assert "1 failing row(s): 1 to a re-run first (uncertain)." in failing
    assert "| uncertain | close to the bar | re-run first |" in failing


def test_curves_beyond_the_labelling_budget_are_not_data_solvable_in_the_report(tmp_path):
    """One row's learning curve reaches the bar beyond pool + budget even at its optimistic end
    (architecture-bound, model change), another's only at its estimate (unresolved, with the
    images that would settle it): the report routes neither to data collection, and its labels-
    needed column keeps both need intervals."""
    from preflight.decide.learning_curve import LearningCurveFit

    def curve(a_samples):  # 0.5 at 6400 images; the interval from the replicates of a
        return LearningCurveFit(a=0.55, b=4.0, c=0.5, n_points=3, n_max=1000.0,
                                saturated=False, method="curve_fit",
                                samples=tuple((x, 4.0, 0.5) for x in a_samples
                                              for _ in range(10)))

    c = CandidateEvidence(
        name="nano", offtheshelf=table({DIM: (0.3, 0.25, 0.35), SMALL: (0.3, 0.25, 0.35)}),
        finetuned=table({DIM: (0.42, 0.39, 0.45), SMALL: (0.42, 0.39, 0.45)}),
        latency_p99_ms=40.0, input_size=320, finetune_pool_images=1000,
        learning_curves={DIM: curve((0.56, 0.55, 0.52)), SMALL: curve((0.6, 0.55, 0.52))})
    bar = Bar(labelling_budget_images=2000, small_object_px=4.0)
    decision = decide([c], bar)
    v = decision.candidate("nano")
    assert (v.n_fail, v.n_data_solvable, v.n_architecture_bound, v.n_unresolved) == (2, 0, 1, 1)
    assert v.verdict == "replace" and decision.overall.verdict == "replace"
    assert ("1 failing row(s) are not routed yet (unresolved or uncertain): take the "
            "measurement named for each; the proposed change is for the architecture-bound "
            "rows, not for them") in v.reasons
    md = write_decision_report(decision, tmp_path)["markdown"].read_text(encoding="utf-8")
    failing = _section(md, "## Failing slices: route and remedy")
    assert "2 failing row(s): 1 to a model change, 1 to a measurement first (unresolved)." \
        in failing
    dim = next(line for line in failing.splitlines() if "lighting=dim (recall)" in line)
    assert "| architecture-bound | learning curve over budget | model change |" in dim
    assert "| 6400 [4444, 40000] |" in dim
    small = next(line for line in failing.splitlines() if "size_bin=small (recall)" in line)
    assert "| unresolved | learning curve straddles the budget | measure first |" in small
    assert "label about 600 more images rich in size_bin=small" in small
    assert "| 6400 [1600, 40000] |" in small
    assert "within the pool plus the labelling budget (2000 images)" in failing
    assert "data-solvable ->" not in md and "data collection:" not in md
