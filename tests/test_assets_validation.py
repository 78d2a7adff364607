"""Ingestion and label validation as Dagster assets on a generated sample with bad input mixed
in: everything is accounted for (in = valid + quarantined), reasons are shown as metadata and
asset checks, and a run over the invalid-fraction limit fails while keeping the quarantine."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from assets.ingestion import ingested_sample, production_sample
from assets.validation import validated_labels
from preflight.runs import run_dir
from preflight.synth.scene import SYNTH_TAXONOMY
from resources import MlflowTracker, PreflightStore, SettingsResource

ASSETS = [production_sample, ingested_sample, validated_labels]


def _landing(tmp_path: Path, n: int = 16) -> Path:
    from preflight.synth.generate import generate

    root = tmp_path / "landing"
    generate(root, profile="production", n=n, weeks=1, seed=5, image_size=96)
    images = sorted((root / "images").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:150])           # truncated JPEG
    images[1].write_bytes(b"")                                     # zero bytes
    images[2].write_bytes(b"not a jpeg at all\n" * 10)             # not an image
    label = root / "labels" / f"{images[3].stem}.txt"
    label.write_text(label.read_text() + "42 0.5 0.5 0.1 0.1\n0 nan 0.5 0.1 0.1\n")
    return root


def _run(tmp_path: Path, landing: Path, max_invalid: float, fmt: str = "yolo"):
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({
        "taxonomy": list(SYNTH_TAXONOMY.names),
        "data": {"landing_dir": str(landing), "eval_fraction": 0.3, "format": fmt},
        "validation": {"max_invalid_fraction": max_invalid}}))
    home = tmp_path / "home"
    resources = {"settings": SettingsResource(config_path=str(config)),
                 "store": PreflightStore(home=str(home)),
                 "tracker": MlflowTracker(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")}
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources, instance=instance,
                                raise_on_error=False)
        return result, run_dir(home, result.run_id)  # where this run's tables are kept


def test_bad_input_is_quarantined_counted_and_shown(tmp_path):
    result, home = _run(tmp_path, _landing(tmp_path), max_invalid=0.5)
    assert result.success
    quarantine = pd.read_parquet(home / "tables" / "quarantine.parquet")
    codes = set(quarantine["reason_code"])
    assert {"truncated_image", "empty_file", "undecodable_image", "unknown_class_id",
            "nan_coordinate"} <= codes
    assert quarantine["reason"].str.len().min() > 10  # a sentence, not a code
    mats = {e.event_specific_data.materialization.asset_key.to_user_string():
            e.event_specific_data.materialization for e in result.get_asset_materialization_events()}
    meta = {k: v.value for k, v in mats["validated_labels"].metadata.items()}
    ingest_meta = {k: v.value for k, v in mats["ingested_sample"].metadata.items()}
    # images in = valid + quarantined (the three unreadable frames never got an image row)
    assert meta["images_in"] == meta["images_valid"] + meta["images_quarantined"]
    assert meta["images_in"] + meta["files_quarantined_at_ingestion"] >= 16
    assert ingest_meta["quarantined"] >= 1  # the empty file: no bytes to hash
    assert "unknown_class_id" in meta["quarantine_reasons"]
    valid = pd.read_parquet(home / "tables" / "validated_boxes.parquet")
    assert valid["class_id"].between(0, 6).all()
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["invalid_fraction_within_limit"].passed
    assert checks["image_ids_unique"].passed


def test_too_much_bad_input_fails_with_the_worst_reasons_and_keeps_the_quarantine(tmp_path):
    result, home = _run(tmp_path, _landing(tmp_path, n=8), max_invalid=0.01)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    user = failure.event_specific_data.user_failure_data
    assert user is not None and "Worst reasons" in user.description
    assert "unknown_class_id" in user.description  # names the reasons
    assert user.metadata["images_quarantined"].value >= 1
    assert (home / "tables" / "quarantine.parquet").is_file()
    assert len(pd.read_parquet(home / "tables" / "quarantine.parquet"))


@pytest.mark.parametrize("bad_name", ["../outside.jpg"])
def test_file_names_cannot_leave_the_landing_folder(tmp_path, bad_name):
    """A COCO file naming ../outside.jpg is quarantined, never read."""
    import json

    landing = _landing(tmp_path, n=6)
    (tmp_path / "outside.jpg").write_bytes((landing / "images").iterdir().__next__().read_bytes())
    coco = json.loads((landing / "annotations.json").read_text())
    coco["images"][0]["file_name"] = bad_name
    (landing / "annotations.json").write_text(json.dumps(coco))
    result, home = _run(tmp_path, landing, max_invalid=0.9, fmt="coco")
    assert result.success
    quarantine = pd.read_parquet(home / "tables" / "quarantine.parquet")
    assert "path_escape" in set(quarantine["reason_code"])


def _own_world_run(tmp_path: Path, **settings):
    """Ingestion and validation of a COCO folder without a metadata table (own_world)."""
    from own_world import CLASSES, make_world

    landing = make_world(tmp_path / "own", n_clips=3, frames=2)
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({"taxonomy": list(CLASSES),
                                      "data": {"landing_dir": str(landing)}, **settings}))
    home = tmp_path / "home"
    resources = {"settings": SettingsResource(config_path=str(config)),
                 "store": PreflightStore(home=str(home)),
                 "tracker": MlflowTracker(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")}
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources, instance=instance,
                                raise_on_error=False)
        warnings = [e.message for e in instance.all_logs(result.run_id)
                    if e.level == logging.WARNING and "zone" in (e.message or "")]
    return result, run_dir(home, result.run_id), warnings


def test_a_configured_slice_column_missing_from_the_data_is_one_warning(tmp_path):
    result, _, warnings = _own_world_run(
        tmp_path, evaluation={"slice_columns": ["zone", "shift_name"]})
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("validated_labels")[0]
            .metadata.items()}
    assert meta["missing_slice_columns"] == ("**warning**: configured slice column(s) zone, "
                                             "shift_name not in the data; skipped")
    assert meta["images_quarantined"] == 0 and meta["images_valid"] == 6
    assert len(warnings) == 1 and "list a column under validation.required_columns" \
        in warnings[0]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["slice_columns_valid"]


def test_a_required_column_missing_from_the_data_is_an_error_naming_it(tmp_path):
    result, home, warnings = _own_world_run(
        tmp_path, evaluation={"slice_columns": ["zone", "shift_name"]},
        validation={"required_columns": {"zone": None}, "max_invalid_fraction": 1.0})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "validated_labels"
    user = failure.event_specific_data.user_failure_data
    assert user.description.startswith(
        "required column(s) ['zone'] (validation.required_columns) are not in the data")
    # the other, not required, column is still only a warning; nothing is lost
    assert user.metadata["missing_slice_columns"].value.endswith("shift_name not in the data; "
                                                                 "skipped")
    assert warnings == []
    quarantine = pd.read_parquet(home / "tables" / "quarantine.parquet")
    images = quarantine[quarantine["level"] == "image"]
    assert set(images["reason_code"]) == {"missing_column"} and len(images) == 6
    assert set(quarantine.loc[quarantine["level"] == "box", "reason_code"]) \
        == {"image_quarantined"}
