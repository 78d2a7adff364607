"""Exported artefacts (ONNX FP32, INT8, OpenVINO IR) reproduce their source model.

Round-trip tolerance (stated once, asserted below): on the same frames, the FP32 ONNX file run
by ONNX Runtime gives the PyTorch model's raw head output within 1e-4 relative + 1e-5 absolute
(boxes in pixels, scores in 0-1) and the same detections -- same count, same class ids, scores
within 1e-4 and boxes within 1e-2 px; OpenVINO on the FP32 IR gives the same within the same
bounds. INT8 calibration is deterministic: the same frames and seed give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.models.base import ChecksumError, ModelError
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

SCORE_TOL, BOX_TOL, RAW_RTOL, RAW_ATOL = 1e-4, 1e-2, 1e-4, 1e-5


@pytest.fixture(autouse=True, scope="module")
def _home(offline_home):
    """Fresh project home, no network (see conftest)."""


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A tiny yolov8n (built from its YAML, one epoch on 96 px toy frames) and test frames."""
    from preflight.models import DetectorTraining, UltralyticsDetector, train_detector
    from preflight.models.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("export")
    data = write_toy_dataset(root / "toy", n=8, size=96, taxonomy=DEFAULT_TAXONOMY,
                             classes=list(range(len(DEFAULT_TAXONOMY) - 1)))
    result = train_detector("yolov8n.yaml", data / "data.yaml", root / "run",
                            DetectorTraining(epochs=1, imgsz=96, batch=4, seed=0, device="cpu",
                                             progress=False))
    det = UltralyticsDetector.from_weights(result.checkpoint, name="tiny", input_size=96,
                                           device="cpu", taxonomy=DEFAULT_TAXONOMY)
    paths = sorted(data.rglob("*.jpg"))
    frames = [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in paths]
    frames.append(np.full((50, 130, 3), 90, np.uint8))  # a non-square frame: letterbox padding
    return det, frames, root


def _same_predictions(a: list[pd.DataFrame], b: list[pd.DataFrame]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        xs = x.sort_values(["class_id", "score", "x", "y"]).to_numpy()
        ys = y.sort_values(["class_id", "score", "x", "y"]).to_numpy()
        assert (xs[:, 0] == ys[:, 0]).all()
        assert np.abs(xs[:, 1] - ys[:, 1]).max(initial=0) <= SCORE_TOL
        assert np.abs(xs[:, 2:] - ys[:, 2:]).max(initial=0) <= BOX_TOL


@pytest.mark.slow
def test_detector_onnx_and_openvino_round_trip(detector, tmp_path):
    import torch

    from preflight.models.export import export_onnx, read_sidecar, to_openvino
    from preflight.models.exported import ExportedDetector, letterbox_tensor, load_exported
    from preflight.models.zoo import sha256_file

    det, frames, _ = detector
    art = export_onnx(det, tmp_path)
    assert art.path.name == "tiny.fp32.onnx" and art.sha256 == sha256_file(art.path)
    meta = read_sidecar(art.path)
    assert meta["task"] == "detect" and meta["input_size"] == 96
    assert (meta["conf"], meta["iou"], meta["max_det"]) == (det.conf, det.iou, det.max_det)
    assert meta["model_classes"] == [det.model_names[i] for i in sorted(det.model_names)]

    ort_det = load_exported(art.path, threads=1)
    assert isinstance(ort_det, ExportedDetector) and ort_det.family == "onnxruntime"
    x = letterbox_tensor([frames[0]], 96)
    with torch.inference_mode():
        raw = det.model.model.eval()(torch.from_numpy(x))[0].numpy()
    assert raw.shape == ort_det.session.run(x).shape
    assert np.allclose(raw, ort_det.session.run(x), rtol=RAW_RTOL, atol=RAW_ATOL)

    reference = det.predict(frames)
    assert sum(len(p) for p in reference) > 0
    _same_predictions(reference, ort_det.predict(frames))

    ir = to_openvino(art, tmp_path)
    assert ir.path.suffix == ".xml" and ir.path.with_suffix(".bin").is_file()
    ov_det = load_exported(ir.path, threads=1)
    assert ov_det.family == "openvino"
    _same_predictions(reference, ov_det.predict(frames))

    # an artefact named in a candidates file is a candidate like any other
    from resources.zoo import ModelZoo

    cands = tmp_path / "candidates.yaml"
    cands.write_text(f"candidates:\n  - name: tiny-onnx\n    family: onnxruntime\n"
                     f"    weights: {art.path.name}\n    input_size: 96\n"
                     f"    sha256: {art.sha256}\n    class_map: {{person: person, box: box}}\n")
    as_candidate = ModelZoo(candidates_file=str(cands)).detector("tiny-onnx")
    assert as_candidate.name == "tiny-onnx" and as_candidate.class_map == {"person": "person",
                                                                         "box": "box"}
    ops = {DEFAULT_TAXONOMY.id_of("person"), DEFAULT_TAXONOMY.id_of("box")}
    assert all(set(p["class_id"]) <= ops for p in as_candidate.predict(frames))

    # a champion that is an export: the zoo loads it, drift embeds with its FP32 source
    zoo = ModelZoo(candidates_file=str(cands))
    champion = zoo.finetuned_detector("tiny-onnx", str(art.path))
    assert champion.family == "onnxruntime" and champion.sha256 == art.sha256
    assert np.allclose(champion.embed(frames[:2]), det.embed(frames[:2]), atol=1e-5)

    factory, kwargs = ort_det.latency_spec()
    assert factory == "preflight.models.exported:make_predict_fn"
    assert kwargs["sha256"] == art.sha256 and kwargs["runtime"] == "onnxruntime"
    with pytest.raises(ChecksumError):
        load_exported(art.path, sha256="0" * 64)
    with pytest.raises(ModelError, match="cannot be trained"):
        ort_det.train("data.yaml", tmp_path)


@pytest.mark.slow
def test_int8_calibration_is_deterministic_given_the_frames_and_seed(detector, tmp_path):
    from preflight.models.export import (
        calibration_frames,
        export_onnx,
        quantize_int8,
        to_openvino,
    )
    from preflight.models.exported import load_exported

    det, frames, root = detector
    paths = sorted(str(p) for p in root.rglob("toy/**/*.jpg"))
    pool = pd.DataFrame({"image_id": [f"im{i:02d}" for i in range(len(paths))], "path": paths})
    pick = calibration_frames(pool, 4, seed=3)
    assert pick == calibration_frames(pool.iloc[::-1], 4, seed=3)  # row order does not matter
    assert len(set(pick)) == 4 and pick != calibration_frames(pool, 4, seed=4)
    calib = [np.ascontiguousarray(cv2.imread(p)[..., ::-1]) for p in pick]

    fp32 = export_onnx(det, tmp_path / "a")
    first = quantize_int8(fp32, calib, tmp_path / "a", seed=3)
    again = quantize_int8(fp32, calib, tmp_path / "b", seed=3)
    assert first.sha256 == again.sha256 and first.sha256 != fp32.sha256
    assert first.path.name == "tiny.int8.onnx"
    side = json.loads(first.sidecar.read_text())
    assert side["precision"] == "int8" and side["calibration_frames"] == 4
    assert side["calibration_seed"] == 3 and side["fp32_sha256"] == fp32.sha256
    import onnx

    ops = {n.op_type for n in onnx.load(str(first.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    int8 = load_exported(first.path).predict(frames)
    assert len(int8) == len(frames)
    assert all(list(p.columns) == ["class_id", "score", "x", "y", "w", "h"] for p in int8)
    ov8 = load_exported(to_openvino(first, tmp_path / "a").path).predict(frames)
    assert len(ov8) == len(frames)
    with pytest.raises(ModelError, match="at least one frame"):
        quantize_int8(fp32, [], tmp_path / "c")
    with pytest.raises(ModelError, match="fine-tuning pool is empty"):
        calibration_frames(pool.iloc[:0], 4, seed=0)


@pytest.mark.slow
def test_classifier_onnx_round_trip_and_int8(tmp_path):
    import torch

    from preflight.models.export import export_onnx, quantize_int8, to_openvino
    from preflight.models.exported import ExportedClassifier, load_exported
    from preflight.models.timm_adapter import TimmClassifier
    from preflight.models.timm_model import checkpoint_dict, create_timm_model, save_checkpoint
    torch.manual_seed(0)
    names = ["human", "person", "sku_a", "cat"]
    model = create_timm_model("test_efficientnet", len(names))
    ckpt = save_checkpoint(checkpoint_dict(model, model_name="test_efficientnet",
                                           class_names=names, input_size=64, mean=[0.5] * 3,
                                           std=[0.25] * 3), tmp_path / "m.pt")
    cmap = {"human": "person", "person": "person", "sku_a": "sku_a"}
    clf = TimmClassifier.from_weights(ckpt, name="clf", class_map=cmap, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40 + 7 * i, 48, 3), dtype=np.uint8) for i in range(6)]
    reference = clf.predict(frames)

    art = export_onnx(clf, tmp_path)
    onnx_clf = load_exported(art.path, threads=1)
    assert isinstance(onnx_clf, ExportedClassifier) and onnx_clf.class_map == cmap
    probs = onnx_clf.predict(frames)
    assert probs.shape == (6, len(DEFAULT_TAXONOMY)) and np.allclose(probs.sum(1), 1.0)
    assert np.abs(probs - reference).max() <= SCORE_TOL
    ov = load_exported(to_openvino(art, tmp_path).path).predict(frames)
    assert np.abs(ov - reference).max() <= SCORE_TOL

    a = quantize_int8(art, frames[:3], tmp_path / "q1", seed=0)
    b = quantize_int8(art, frames[:3], tmp_path / "q2", seed=0)
    assert a.sha256 == b.sha256
    q = load_exported(a.path).predict(frames)
    assert q.shape == probs.shape and np.allclose(q.sum(1), 1.0)


def test_paired_deltas_are_zero_for_identical_models_and_catch_a_drop():
    from preflight.metrics.paired import paired_deltas

    rng = np.random.default_rng(0)
    n_images, n = 120, 1500
    unit_image = rng.integers(0, n_images, n)
    source = rng.random(n) < 0.8
    export = source & (rng.random(n) > 0.15)   # the export misses 15% of what the source found
    dim = unit_image < 30
    slices = [("__all__", "__all__", "recall", np.ones(n, bool)), ("light", "dim", "recall", dim)]
    same = paired_deltas(unit_image, source, source, n_images, slices, bootstrap=100, seed=1,
                         bar=0.5)
    assert (same["delta"] == 0).all() and (same["delta_ci_low"] == 0).all()
    assert not same["changed"].any() and (same["export_status"] == "pass").all()
    drop = paired_deltas(unit_image, source, export, n_images, slices, bootstrap=100, seed=1,
                         bar=0.75)
    assert drop["changed"].all() and (drop["delta_ci_high"] < 0).all()
    overall = drop.iloc[0]
    assert overall["source"] == pytest.approx(source.mean())
    assert overall["delta"] == pytest.approx(export.mean() - source.mean())
    assert overall["delta_ci_low"] <= overall["delta"] <= overall["delta_ci_high"]
    assert overall["export_status"] == "fail"  # ~0.68 recall, the interval below 0.75
    # paired: tighter than the export's own interval
    width = overall["delta_ci_high"] - overall["delta_ci_low"]
    assert width < overall["export_ci_high"] - overall["export_ci_low"]
    again = paired_deltas(unit_image, source, export, n_images, slices, bootstrap=100, seed=1,
                          bar=0.75)
    pd.testing.assert_frame_equal(drop, again)
    assert drop.iloc[1]["n_units"] == int(dim.sum())
    with pytest.raises(ValueError, match="one entry per unit"):
        paired_deltas(unit_image[:-1], source, export, n_images, slices)


# ------------------------------------------------------------------ the decision can ship an export
def _long(rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{"slice_column": c, "slice_value": v, "metric": m, "value": x,
                          "ci_low": lo, "ci_high": hi, "n_images": 200, "n_boxes": 400,
                          "thin": False} for (c, v, m), (x, lo, hi) in rows.items()])


GOOD = {("__all__", "__all__", "recall"): (0.80, 0.76, 0.84),
        ("__all__", "__all__", "precision"): (0.85, 0.81, 0.88),
        ("lighting", "dim", "recall"): (0.70, 0.62, 0.77)}
BAD_DIM = {**GOOD, ("lighting", "dim", "recall"): (0.40, 0.33, 0.47)}


def _export(metrics, p99, source_p99, label="onnx_int8", candidate="nano"):
    from preflight.decide.exports import ExportEvidence

    return ExportEvidence(candidate=candidate, label=label,
                          description=f"INT8 ONNX export of {candidate} (off-the-shelf)",
                          source_stage="off-the-shelf", metrics=_long(metrics),
                          latency_p99_ms=p99, source_latency_p99_ms=source_p99,
                          weights=f"/x/{candidate}.int8.onnx", sha256="ab" * 32)


def test_the_decision_ships_the_export_only_when_the_fp32_model_is_over_budget():
    from preflight.decide import REPLACE, SHIP, Bar, CandidateEvidence, decide
    from preflight.decide.exports import assess_exports, choose_export, exports_table

    bar = Bar(min_recall={"default": 0.6}, min_precision={"default": 0.5},
              min_slice_recall=0.5, latency_budget_p99_ms=250.0, labelling_budget_images=2000)
    slow = decide([CandidateEvidence("nano", _long(GOOD), latency_p99_ms=400.0)], bar)
    assert slow.overall.verdict == REPLACE   # the FP32 model clears the bar but is too slow
    good = assess_exports([_export(GOOD, 120.0, 400.0)], bar)
    assert good[0].clears_bar and good[0].speedup == pytest.approx(400 / 120)
    chosen, export = choose_export(slow, good, bar)
    assert export is good[0] and chosen.overall.verdict == SHIP
    assert chosen.overall.candidate == "nano" and chosen.overall.stage == "off-the-shelf"
    assert chosen.overall.reasons[0] == "ship the INT8 ONNX export of nano (off-the-shelf)"
    assert "sha256 abababababab" in " ".join(chosen.overall.reasons)
    # an export that fails a slice, or is over the budget itself, does not ship
    for bad in (_export(BAD_DIM, 120.0, 400.0), _export(GOOD, 300.0, 400.0)):
        verdicts = assess_exports([bad], bar)
        assert not verdicts[0].clears_bar
        assert choose_export(slow, verdicts, bar) == (slow, None)
    assert assess_exports([_export(BAD_DIM, 1, 2)], bar)[0].failing == (
        "lighting=dim (recall)",)  # the report's row names, never internal keys
    # what blocks its source whatever the metrics (an off-the-shelf model's class without an
    # analog in pre-training) blocks the export too
    blocked = assess_exports([replace(_export(GOOD, 120.0, 400.0),
                                      blocking=("no analog in pre-training: crate",))], bar)
    assert not blocked[0].clears_bar and choose_export(slow, blocked, bar) == (slow, None)
    assert exports_table(blocked).loc[0, "blocked by"] == "no analog in pre-training: crate"
    # an operational class without enough evidence keeps it from shipping, as the FP32 rule
    # does (the label plan's gaps); a slice that is not critical does not
    unsure = {**GOOD, ("__all__", "__all__", "recall.crate"): (0.9, 0.3, 1.0),
              ("camera", "c9", "recall"): (0.6, 0.2, 0.9)}
    (gap,) = assess_exports([_export(unsure, 120.0, 400.0)], bar)
    assert not gap.clears_bar and gap.gaps == ("class crate (recall)",)
    assert exports_table([gap]).loc[0, "without enough evidence"] == "class crate (recall)"
    # the FP32 model ships: it stands, the exports are reported beside it
    fast = decide([CandidateEvidence("nano", _long(GOOD), latency_p99_ms=40.0)], bar)
    assert choose_export(fast, good, bar) == (fast, None)
    shown = exports_table(good)
    assert shown.loc[0, "clears the bar"] and shown.loc[0, "FP32 p99 ms"] == 400.0


def test_the_reasons_of_a_shipped_export_do_not_contradict_it(tmp_path):
    from preflight.decide import FINE_TUNE, REPLACE, Bar, CandidateEvidence, decide
    from preflight.decide.exports import assess_exports, choose_export
    from preflight.report.decision import write_decision_report

    bar = Bar(min_recall={"default": 0.6}, min_precision={"default": 0.5},
              min_slice_recall=0.5, latency_budget_p99_ms=250.0, labelling_budget_images=2000)
    fp32 = decide([CandidateEvidence("nano", _long(BAD_DIM), latency_p99_ms=400.0,
                                     finetuned=_long(GOOD), latency_p99_ms_finetuned=400.0)],
                  bar)
    assert fp32.overall.verdict == REPLACE
    assert any(r.startswith("no candidate ships") for r in fp32.overall.reasons)
    export = replace(_export(GOOD, 120.0, 400.0), source_stage="fine-tuned",
                     description="INT8 ONNX export of nano (fine-tuned)")
    chosen, _ = choose_export(fp32, assess_exports([export], bar), bar)
    o = chosen.overall
    assert (o.verdict, o.candidate, o.stage) == (FINE_TUNE, "nano", "fine-tuned")
    assert o.reasons[0] == "ship the INT8 ONNX export of nano (fine-tuned)"
    assert o.reasons[1].startswith("the FP32 nano (fine-tuned) does not fit the latency budget: "
                                   "p99 400 ms over 250 ms; its onnx_int8 export does: p99 120")
    # the FP32 call is context, worded as such: nothing says that nothing ships or to change
    for r in o.reasons:
        assert not r.startswith(("no candidate ships", "change:", "replace with", "label:")), r
    assert any(r.startswith("the FP32 models alone ship none (their call: 'replace'")
               for r in o.reasons)
    assert all(r.startswith(("FP32 nano (fine-tuned): ", "ship ", "the FP32 ", "champion: "))
               for r in o.reasons)
    md = write_decision_report(chosen, tmp_path)["markdown"].read_text()
    assert "**Verdict: fine-tune.** Chosen model: **nano** (fine-tuned)" in md
    assert "no candidate ships" not in md
    assert ("The verdicts below are the FP32 models'. nano's FP32 model does not ship (replace); "
            "what ships is its export: ship the INT8 ONNX export of nano (fine-tuned).") in md


def test_flag_deltas_marks_slices_where_the_export_is_below_the_bar():
    from preflight.decide import Bar
    from preflight.decide.exports import flag_deltas
    from preflight.metrics.paired import DELTA_COLUMNS

    bar = Bar(min_recall={"default": 0.6}, min_precision={"default": 0.5},
              min_slice_recall=0.5, latency_budget_p99_ms=250.0, labelling_budget_images=2000)
    deltas = pd.DataFrame([dict.fromkeys(DELTA_COLUMNS, 0.0) | {
        "slice_column": c, "slice_value": v, "metric": m, "changed": False}
        for c, v, m in BAD_DIM])
    flagged = flag_deltas(deltas, _long(BAD_DIM), bar)
    assert flagged.set_index("slice_value")["below_bar"].to_dict() == {"__all__": False,
                                                                      "dim": True}
    assert flagged.loc[flagged["slice_value"] == "dim", "bar"].iloc[0] == 0.5


def test_one_export_asset_per_candidate_stage_and_format():
    """The factory: every configured stage the candidate has (fine-tuned only when it is
    fine-tuned) times every format, each its own asset reading its own FP32 source."""
    from assets.exports import build_export_assets
    from preflight.config import ConfigError, ExportSettings

    formats = ["onnx_fp32", "onnx_int8"]

    def keys(assets):
        return {a.key.to_user_string(): {k.to_user_string() for k in a.dependency_keys}
                for a in assets}

    both = keys(build_export_assets("cand", formats, finetuned=True))
    assert set(both) == {f"cand/export_{s}_{f}" for s in ("offtheshelf", "finetuned")
                         for f in formats}
    assert "cand/offtheshelf_eval" in both["cand/export_offtheshelf_onnx_int8"]
    assert "cand/reeval" in both["cand/export_finetuned_onnx_int8"]
    assert "cand/finetuned_model" in both["cand/export_finetuned_onnx_fp32"]
    assert set(keys(build_export_assets("cand", formats, finetuned=False))) == {
        "cand/export_offtheshelf_onnx_fp32", "cand/export_offtheshelf_onnx_int8"}
    assert not build_export_assets("cand", formats, finetuned=False, stages=["finetuned"])
    assert ExportSettings().stages == ["offtheshelf", "finetuned"]
    with pytest.raises(ConfigError, match="export.stages"):
        ExportSettings(stages=["quantised"])


def test_an_offtheshelf_export_is_blocked_as_its_source_would_be(tmp_path):
    """The decision asset's export evidence: an off-the-shelf export with a class its source has
    no analog for, or with recall under stress below the bar at a family's expected severity,
    does not clear the bar whatever its metrics; a fine-tuned export is not blocked by them."""
    from assets.decision import _export_evidence
    from preflight.decide import Bar

    bar = Bar(min_recall={"default": 0.6}, min_precision={"default": 0.5},
              min_slice_recall=0.5, latency_budget_p99_ms=250.0, labelling_budget_images=2000,
              expected_severity={"distribution_shift": 2})
    metrics = tmp_path / "metrics.parquet"
    _long(GOOD).to_parquet(metrics)
    deltas = tmp_path / "deltas.parquet"
    pd.DataFrame([{"slice_column": "__all__", "slice_value": "__all__", "metric": "recall",
                   "source": 0.8, "export": 0.8, "delta": 0.0, "delta_ci_low": 0.0,
                   "delta_ci_high": 0.0, "changed": False, "export_status": "pass",
                   "below_bar": False}]).to_parquet(deltas)
    stress = tmp_path / "stress.parquet"
    pd.DataFrame([{"family": "distribution_shift", "corruption": "fog", "severity": s,
                   "metric": "recall", "value": v} for s, v in ((1, 0.7), (2, 0.4))]
                 ).to_parquet(stress)

    def value(stage: str, stress_table) -> dict:
        return {"candidate": "nano", "label": "onnx_int8", "source_stage": stage,
                "description": f"INT8 ONNX export of nano ({stage})", "production_p99_ms": 90.0,
                "source_production_p99_ms": 400.0, "weights": "/x/nano.int8.onnx",
                "sha256": "ab" * 32, "daily_cost": 1.0,
                "tables": {"metrics": str(metrics), "deltas": str(deltas),
                           "stress": str(stress_table) if stress_table else None}}

    def verdicts(no_analog, values):
        per_cand = {"nano": {"offtheshelf_eval": {"no_analog": no_analog}}}
        return _export_evidence(values, bar, per_cand)[0]

    clear = verdicts([], [value("off-the-shelf", None), value("fine-tuned", stress)])
    assert [v.clears_bar for v in clear] == [True, True]
    (no_analog,) = verdicts(["crate"], [value("off-the-shelf", None)])
    assert no_analog.blocking == ("no analog in pre-training: crate",)
    assert not no_analog.clears_bar
    (stressed,) = verdicts([], [value("off-the-shelf", stress)])
    assert not stressed.clears_bar and len(stressed.blocking) == 1
    assert stressed.blocking[0].startswith("recall below the bar under stress at the expected "
                                           "severity: distribution_shift/fog severity 2")


def test_changed_recall_names_the_rows_whose_paired_interval_excludes_zero():
    from preflight.decide.export_evidence import changed_recall

    deltas = pd.DataFrame([
        {"slice_column": "__all__", "slice_value": "__all__", "metric": "recall", "delta": -0.01,
         "delta_ci_low": -0.03, "delta_ci_high": 0.01, "changed": False},
        {"slice_column": "lighting", "slice_value": "dim", "metric": "recall", "delta": -0.12,
         "delta_ci_low": -0.2, "delta_ci_high": -0.05, "changed": True},
        {"slice_column": "__all__", "slice_value": "__all__", "metric": "recall.crate",
         "delta": 0.06, "delta_ci_low": 0.01, "delta_ci_high": 0.1, "changed": True},
        {"slice_column": "__all__", "slice_value": "__all__", "metric": "precision",
         "delta": 0.2, "delta_ci_low": 0.1, "delta_ci_high": 0.3, "changed": True}])
    assert changed_recall(deltas) == ("lighting=dim (recall) -0.120 [-0.200, -0.050]; "
                                      "class crate (recall) +0.060 [+0.010, +0.100]")
    assert changed_recall(deltas[~deltas["changed"]]) == "none"


def test_the_exportable_families_are_the_rows_of_the_exporter_table():
    """One table says how each family exports; the registry's ``exportable`` rows are its rows,
    and a model of any other family is refused with the families that can export."""
    from types import SimpleNamespace

    from preflight.models.base import ModelError
    from preflight.models.export import SOURCE_EXPORTERS, source_meta
    from preflight.models.registry import FAMILIES

    assert {n for n, f in FAMILIES.items() if f.exportable} == set(SOURCE_EXPORTERS)
    assert {n: e.task for n, e in SOURCE_EXPORTERS.items()} == {
        n: FAMILIES[n].task for n in SOURCE_EXPORTERS}
    with pytest.raises(ModelError, match=r"m: cannot export a model of family 'onnxruntime' "
                                         r"\(ultralytics detectors and timm classifiers only\)"):
        source_meta(SimpleNamespace(name="m", family="onnxruntime"))
