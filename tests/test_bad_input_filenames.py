"""File names in any encoding go the whole way: ingestion, the stored tables, and the later stages
that open the frame again (evaluation's frame reader, stress inputs, the fine-tuning view's hard
links, a landed batch's manifest check) -- with every image counted once.

On Linux a name is bytes: a Latin-1 / CP1252 name unpacked from an old archive is not UTF-8. The
tables keep it reversibly (``preflight.data.filenames``); only a name that no file system can
hold is refused, with one line.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.filenames import fs_path, name_variants, stored_path, unrepresentable
from preflight.data.ingest import ingest
from preflight.data.landing import batch_folder, mark_complete, scan_landing, write_manifest
from preflight.data.validate import validate_labels
from preflight.evaluation import PRED_COLUMNS, predict_images, stress_inputs
from preflight.finetune import write_yolo_view
from preflight.synth.scene import SYNTH_TAXONOMY as TAXONOMY

#: raw names (bytes as on disk) of one folder: Latin-1, CP1252 with quotes and spaces, invalid
#: UTF-8 in a sub-folder, NFD Unicode, a newline and quotes, a literal backslash
ODD_NAMES: list[bytes] = [
    b"caf\xe9",
    b"\x80 price \x93q\x94 'x' \"y\"",
    b"cam\xff/frame 01",
    unicodedata.normalize("NFD", "ñandú").encode(),
    b"line\nbreak 'q'",
    b"back\\slash",
    b"plain",
]


def _frame(seed: int) -> bytes:
    """A 40x32 PNG whose mean brightness tells the frames apart."""
    img = np.full((32, 40, 3), 20 + 30 * seed, np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _write(folder: Path, stems: list[bytes], box: str = "0 0.5 0.5 0.25 0.25\n") -> dict[bytes,
                                                                                      bytes]:
    """A YOLO folder with one frame + one box per stem; returns raw image name -> its bytes."""
    root = os.fsencode(folder)
    written = {}
    for i, stem in enumerate(stems):
        for sub, ext, data in ((b"images", b".png", _frame(i)), (b"labels", b".txt", box.encode())):
            path = os.path.join(root, sub, stem + ext)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
            if sub == b"images":
                written[stem + ext] = data
    (folder / "data.yaml").write_text("names: [" + ", ".join(TAXONOMY.names) + "]\n")
    return written


def _mean_brightness(frames):
    """A stand-in detector: one full-frame box whose score is the frame's mean brightness, so the
    predictions prove the right pixels were read."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        out.append(np.array([[0.0, float(f.mean()) / 255.0, 0.0, 0.0, w, h]]))  # PRED_COLUMNS
    return out


def test_odd_names_are_ingested_stored_and_reopened_by_later_stages(tmp_path):
    landing = tmp_path / "landing"
    written = _write(landing, ODD_NAMES)
    res = ingest(landing, taxonomy=TAXONOMY)
    val = validate_labels(res.images.assign(split="eval"), res.boxes, taxonomy=TAXONOMY,
                          prior_quarantine=res.quarantine)
    # every frame accepted with its box; nothing quarantined; the books balance
    assert len(val.quarantine) == 0, val.quarantine[["source", "reason"]].to_string()
    assert len(val.images) == len(ODD_NAMES) and len(val.boxes) == len(ODD_NAMES)
    assert val.stats["images_in"] == val.stats["images_valid"] == len(ODD_NAMES)

    # the tables are storable (Parquet: UTF-8 only) and the stored path gives the exact bytes back
    val.images.to_parquet(tmp_path / "images.parquet")
    val.boxes.to_parquet(tmp_path / "boxes.parquet")
    images = pd.read_parquet(tmp_path / "images.parquet")
    boxes = pd.read_parquet(tmp_path / "boxes.parquet")
    on_disk = {os.fsencode(fs_path(p)): p for p in images["path"]}
    root = os.fsencode(landing.resolve())
    assert set(on_disk) == {os.path.join(root, b"images", n) for n in written}
    shown = set(images["source"])
    assert "images/caf\\xe9.png" in shown and "images/cam\\xff/frame 01.png" in shown
    assert "images/" + unicodedata.normalize("NFD", "ñandú") + ".png" in shown

    # evaluation reads each frame again: one prediction per frame, from that frame's own pixels
    preds = predict_images(_mean_brightness, images, batch_size=3)
    assert len(preds) == len(images) and list(preds.columns[1:]) == PRED_COLUMNS
    by_id = preds.set_index("image_id")["score"]
    for image_id, path in zip(images["image_id"], images["path"], strict=True):
        pixels = cv2.imdecode(np.frombuffer(Path(fs_path(path)).read_bytes(), np.uint8),
                              cv2.IMREAD_COLOR)
        assert by_id[image_id] == pytest.approx(pixels.mean() / 255.0)
    assert sum(1 for _ in stress_inputs(images, boxes)) == len(images)

    # fine-tuning links every frame into its YOLO view under its image id
    view = write_yolo_view(images.assign(split="train"), boxes, TAXONOMY, tmp_path / "view",
                           val_fraction=0.0)
    linked = sorted((view.parent / "images" / "train").iterdir())
    assert len(linked) == len(images)
    assert sorted(p.read_bytes() for p in linked) == sorted(written.values())


def test_a_landed_batch_with_odd_names_is_complete_and_ingests_every_frame(tmp_path):
    zone = tmp_path / "landing"
    folder = zone / "week_07"
    _write(folder, ODD_NAMES)
    write_manifest(folder)
    mark_complete(folder)
    status = {s.name: s for s in scan_landing(zone)}["week_07"]
    assert status.complete, status.reason
    res = ingest(batch_folder(zone, "week_07"), taxonomy=TAXONOMY)
    assert res.stats["images_ingested"] == len(ODD_NAMES) and len(res.quarantine) == 0
    assert len(res.boxes) == len(ODD_NAMES)


def test_stored_path_round_trips_and_leaves_ordinary_paths_alone():
    assert stored_path("/data/a b/café.jpg") == "/data/a b/café.jpg"
    raw = os.fsdecode(b"/data/caf\xe9 %41.jpg")
    kept = stored_path(raw)
    assert kept == "file:///data/caf%E9%20%2541.jpg" and kept.encode("utf-8")
    assert fs_path(kept) == raw and fs_path("/data/x.jpg") == "/data/x.jpg"


def test_a_name_written_in_utf8_finds_its_legacy_encoded_file():
    assert os.fsdecode(b"caf\xe9.jpg") in name_variants("café.jpg")
    assert unicodedata.normalize("NFD", "café.jpg") in name_variants("café.jpg")
    assert name_variants("plain.jpg") == ["plain.jpg"]


@pytest.mark.parametrize(("name", "why"), [("a\x00.jpg", "NUL byte"),
                                           ("\ud800.jpg", r"\ud800, a lone surrogate")])
def test_only_unrepresentable_names_are_refused_in_one_line(name, why):
    reason = unrepresentable(name)
    assert reason is not None and why in reason and "\n" not in reason
    assert unrepresentable(os.fsdecode(b"caf\xe9.jpg")) is None


def test_odd_names_through_the_ingestion_and_validation_assets(tmp_path):
    """The Dagster stages: the run's Parquet tables (atomic writes in the run folder) and MLflow
    (params, artefacts) take the names; every frame is in the validated table and opens again
    from its stored path."""
    import dagster as dg
    import yaml

    from assets.ingestion import ingested_sample, production_sample
    from assets.validation import validated_labels
    from preflight.runs import run_dir
    from resources import MlflowTracker, PreflightStore, SettingsResource

    landing = tmp_path / "landing"
    written = _write(landing, ODD_NAMES)
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({"taxonomy": list(TAXONOMY.names),
                                      "data": {"landing_dir": str(landing), "format": "yolo"}}))
    home = tmp_path / "home"
    resources = {"settings": SettingsResource(config_path=str(config)),
                 "store": PreflightStore(home=str(home)),
                 "tracker": MlflowTracker(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")}
    with dg.instance_for_test() as instance:
        result = dg.materialize([production_sample, ingested_sample, validated_labels],
                                resources=resources, instance=instance, raise_on_error=False)
    assert result.success
    tables = run_dir(home, result.run_id) / "tables"
    images = pd.read_parquet(tables / "validated_images.parquet")
    assert len(images) == len(ODD_NAMES)
    assert sorted(Path(fs_path(p)).read_bytes() for p in images["path"]) == sorted(
        written.values())
    assert len(pd.read_parquet(tables / "quarantine.parquet")) == 0
    # MLflow takes the tables and the names as the evaluation stages log them
    tracker = resources["tracker"]
    run_id = tracker.start_child(tracker.parent_run(result.run_id), "odd-names")
    odd = sorted(images["file_name"])
    tracker.log_params(run_id, {f"frame_{i}": name for i, name in enumerate(odd)})
    tracker.log_artifact(run_id, tables / "validated_images.parquet", "tables")
    tracker.finish(run_id)
    logged = tracker.client().get_run(run_id)
    assert sorted(logged.data.params.values()) == odd
    assert [a.path for a in tracker.client().list_artifacts(run_id, "tables")] == [
        "tables/validated_images.parquet"]
