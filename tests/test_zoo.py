"""The demo zoo: build -> checkpoint + manifest with the right sha256, cached rebuilds, tamper
detection, label-space views, and the `preflight zoo` CLI. Tiny: 12 toy images at 96 px, 1 epoch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from preflight.models import (
    ChecksumError,
    Manifest,
    ZooBuild,
    ZooError,
    build_zoo,
    load_candidates,
    resolve_weights,
    sha256_file,
    unmapped_classes,
)
from preflight.models.toy import write_toy_dataset
from preflight.models.zoo import prepare_view
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _home(offline_home):
    """Zoo, ultralytics settings and fonts in a fresh home; no network (see conftest)."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy", n=12, size=96, seed=3,
                             taxonomy=DEFAULT_TAXONOMY,
                             classes=list(range(len(DEFAULT_TAXONOMY) - 1)))


@pytest.fixture(scope="module")
def candidate():
    cand = next(c for c in load_candidates() if c.name == "yolov8n")
    return replace(cand, input_size=96)


#: the toy build: 96 px, one epoch of 4-image batches on the CPU, no progress bar
TOY_BUILD = ZooBuild(image_size=96, epochs=1, batch=4, seed=0, device="cpu", progress=False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, toy, candidate):
    zoo_dir = tmp_path_factory.mktemp("zoo")
    manifest = build_zoo(zoo_dir, [candidate], TOY_BUILD, data_dir=toy)
    return zoo_dir, manifest


@pytest.mark.slow
def test_build_writes_checkpoint_and_manifest(zoo, candidate, toy):
    zoo_dir, manifest = zoo
    ckpt = zoo_dir / "yolov8n.pt"
    assert ckpt.is_file()
    on_disk = json.loads((zoo_dir / "manifest.json").read_text())
    entry = on_disk["models"]["yolov8n"]
    assert entry["sha256"] == sha256_file(ckpt) == manifest.models["yolov8n"]["sha256"]
    assert entry["arch"] == "yolov8n.yaml" and entry["family"] == "ultralytics"
    assert entry["model_classes"] == ["person", "forklift", "pallet", "box", "sku_a", "sku_b"]
    assert {"epochs": 1, "imgsz": 96, "batch": 4, "seed": 0}.items() <= entry["train"].items()
    assert entry["train"]["amp"] is False and "optimizer" in entry["train"]
    assert {"ultralytics", "torch", "python"} <= set(entry["versions"])
    assert entry["data"]["source"] == "dir" and entry["data"]["path"] == str(toy.resolve())
    assert entry["data"]["train_images"] + entry["data"]["val_images"] == 12
    assert entry["seconds"] > 0 and "train/box_loss" in entry["final_train_loss"]
    assert "map50" in entry["heldout_val"]
    assert on_disk["last_build"]["built"] == ["yolov8n"]
    # the stand-in's label space has no sku_new: reported as "no analog in pre-training"
    assert unmapped_classes(candidate, DEFAULT_TAXONOMY) == ["sku_new"]


@pytest.mark.slow
def test_second_build_is_cached(zoo, candidate, toy):
    zoo_dir, _ = zoo
    ckpt = zoo_dir / "yolov8n.pt"
    before = ckpt.stat().st_mtime_ns
    manifest = build_zoo(zoo_dir, [candidate], TOY_BUILD, data_dir=toy)
    assert manifest.last_build["cached"] == ["yolov8n"] and manifest.last_build["built"] == []
    assert ckpt.stat().st_mtime_ns == before


@pytest.mark.slow
def test_load_checks_sha256_and_tampering_is_caught(zoo, candidate, toy):
    from preflight.models import UltralyticsDetector

    zoo_dir, _ = zoo
    det = UltralyticsDetector.from_candidate(candidate, zoo_dir, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    assert det.weights_source == "zoo" and det.sha256 == sha256_file(zoo_dir / "yolov8n.pt")
    assert set(det.id_map.values()) == {0, 1, 2, 3, 4, 5}  # sku_new (6) has no model class

    ckpt = zoo_dir / "yolov8n.pt"
    original = ckpt.read_bytes()
    ckpt.write_bytes(original + b"tampered")
    try:
        with pytest.raises(ChecksumError, match="does not match|manifest records"):
            UltralyticsDetector.from_candidate(candidate, zoo_dir, device="cpu", taxonomy=DEFAULT_TAXONOMY)
        with pytest.raises(ChecksumError, match="zoo build --force"):
            resolve_weights(candidate, zoo_dir)
    finally:
        ckpt.write_bytes(original)
    assert resolve_weights(candidate, zoo_dir).source == "zoo"


def test_missing_zoo_model_says_how_to_build(tmp_path, candidate):
    with pytest.raises(ZooError, match="preflight zoo build"):
        resolve_weights(candidate, tmp_path / "empty-zoo")
    with pytest.raises(ZooError, match="no zoo candidates"):
        build_zoo(tmp_path, [replace(candidate, weights="yolov8n.pt")], data_dir=tmp_path)


def test_view_maps_ids_and_drops_classes_outside_the_label_space(tmp_path, candidate):
    data = write_toy_dataset(tmp_path / "all", n=10, size=64, seed=1,
                             classes=list(range(len(DEFAULT_TAXONOMY))), taxonomy=DEFAULT_TAXONOMY)
    # model label space in another order than the taxonomy, without sku_new
    cmap = {"sku_b": "sku_b", "person": "person", "box": "box"}
    view = prepare_view(data, list(cmap), cmap, tmp_path / "views", seed=0)
    doc = yaml.safe_load((view / "data.yaml").read_text())
    assert doc["names"] == {0: "sku_b", 1: "person", 2: "box"}
    src_counts, view_counts = {}, {}
    for lbl in (data / "labels").glob("*.txt"):
        for line in lbl.read_text().split("\n"):
            if line:
                name = DEFAULT_TAXONOMY.names[int(line.split()[0])]
                src_counts[name] = src_counts.get(name, 0) + 1
    for lbl in (view / "labels").rglob("*.txt"):
        for line in lbl.read_text().split("\n"):
            if line:
                name = doc["names"][int(line.split()[0])]
                view_counts[name] = view_counts.get(name, 0) + 1
    assert view_counts == {k: v for k, v in src_counts.items() if k in cmap}
    assert len(list((view / "images" / "val").iterdir())) == 2  # 15 % of 10, held out
    assert prepare_view(data, list(cmap), cmap, tmp_path / "views", seed=0) == view  # cached


def main(argv: list[str]) -> int:
    """``preflight zoo ...`` through the sub-command's own parser (preflight.cli adds the rest)."""
    import argparse

    from preflight.models import cli

    parser = argparse.ArgumentParser(prog="preflight zoo")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


@pytest.mark.slow
def test_cli_list_and_cached_build(zoo, toy, tmp_path, capsys):
    zoo_dir, _ = zoo
    cands = tmp_path / "cands.yaml"
    cands.write_text(yaml.safe_dump({"candidates": [{
        "name": "yolov8n", "family": "ultralytics", "weights": "zoo:yolov8n",
        "arch": "yolov8n.yaml", "input_size": 96,
        "class_map": {n: n for n in DEFAULT_TAXONOMY.names[:6]}}]}, sort_keys=False))
    assert main(["list", "--zoo", str(zoo_dir), "--candidates", str(cands)]) == 0
    out = capsys.readouterr().out
    assert "yolov8n" in out and "no analog in pre-training: sku_new" in out
    before = (zoo_dir / "yolov8n.pt").stat().st_mtime_ns
    assert main(["build", "--zoo", str(zoo_dir), "--candidates", str(cands), "--data",
                 str(toy), "--epochs", "1", "--image-size", "96", "--quiet", "--device", "cpu",
                 "--batch", "4"]) == 0
    assert "cached ['yolov8n']" in capsys.readouterr().out
    assert (zoo_dir / "yolov8n.pt").stat().st_mtime_ns == before
    assert main(["list", "--zoo", str(zoo_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"]["yolov8n"]["sha256"]
    assert main(["build", "--zoo", str(tmp_path / "z"), "--candidates",
                 str(tmp_path / "nope.yaml")]) == 2


def test_cli_import_is_light():
    code = ("import sys, preflight.models.cli, preflight.models; "
            "print('torch' in sys.modules or 'ultralytics' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


def test_manifest_load_of_garbage_is_clear(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ZooError, match="unreadable zoo manifest"):
        Manifest.load(tmp_path)


def test_manifest_update_keeps_the_entries_other_builds_wrote(tmp_path):
    """The pass builds one stand-in per step (possibly in parallel processes): an update re-reads
    the file under the zoo lock and changes only its own entry."""
    first, second = Manifest.load(tmp_path), Manifest.load(tmp_path)  # both before any write
    first.update("a", {"checkpoint": "a.pt", "sha256": "1"})
    second.update("b", {"checkpoint": "b.pt", "sha256": "2"})  # loaded before "a" was written
    second.update(last_build={"built": ["b"]})
    on_disk = Manifest.load(tmp_path)
    assert set(on_disk.models) == {"a", "b"} and on_disk.last_build == {"built": ["b"]}
    assert set(second.models) == {"a", "b"}  # the object holds the file's new content
