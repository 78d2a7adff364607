"""The classify task's core: object crops from detection frames, the classification-sample reader
(with quarantine), the timm adapter (predict over the operational taxonomy, embed, train + resume,
freeze modes, latency spec), the zoo build of a timm candidate and classification metrics on its
predictions. Tiny: ~35 crops at 64 px, timm's 0.1 M-parameter ``test_efficientnet``, 1-2 epochs."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.classification_sample import (
    _crop_window,
    crops_from_detection_sample,
    read_classification_sample,
    sample_stats,
)
from preflight.models import (
    ChecksumError,
    ZooBuild,
    build_zoo,
    load_candidates,
    sha256_file,
)
from preflight.models.candidates import CandidateError, parse_candidates, unmapped_classes
from preflight.models.timm_adapter import TimmClassifier
from preflight.models.timm_model import checkpoint_dict, create_timm_model, save_checkpoint
from preflight.models.timm_training import (
    ClassifierTraining,
    train_classifier,
    trainable_parameter_names,
)
from preflight.synth.generate import generate
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

REPO = Path(__file__).resolve().parents[1]
TINY = "test_efficientnet"  # timm's 0.1 M-parameter EfficientNet, built for tests
SIZE = 64
BENCH = ["person", "forklift", "pallet", "box", "sku_a", "sku_b"]


@pytest.fixture(autouse=True, scope="module")
def _offline(tmp_path_factory):
    """Preflight home outside the repo; any network attempt (a timm/HF download) fails the test."""
    import socket

    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted in an offline test")

    patch = pytest.MonkeyPatch()
    patch.setenv("PREFLIGHT_HOME", str(tmp_path_factory.mktemp("home")))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setattr(socket, "getaddrinfo", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket.socket, "connect", refuse)
    yield
    patch.undo()
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def bench_frames(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "bench"
    generate(out, profile="benchmark", n=8, seed=1, image_size=192)
    return out


@pytest.fixture(scope="module")
def bench_crops(bench_frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops") / "bench"
    summary = crops_from_detection_sample(bench_frames, out, size=SIZE, taxonomy=DEFAULT_TAXONOMY)
    return out, summary


@pytest.fixture(scope="module")
def prod_crops(tmp_path_factory):
    frames = tmp_path_factory.mktemp("frames") / "prod"
    generate(frames, profile="production", n=12, seed=2, image_size=160, weeks=4)
    out = tmp_path_factory.mktemp("crops") / "prod"
    crops_from_detection_sample(frames, out, size=SIZE, taxonomy=DEFAULT_TAXONOMY)
    return frames, out


@pytest.fixture(scope="module")
def bench_sample(bench_crops):
    images, quarantine = read_classification_sample(bench_crops[0], taxonomy=DEFAULT_TAXONOMY)
    assert quarantine.empty
    return images


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- crops
def test_crops_are_the_labelled_boxes(bench_frames, bench_crops):
    out, summary = bench_crops
    labels = pd.read_csv(out / "labels.csv")
    meta = pd.read_parquet(out / "metadata.parquet")
    assert summary.n_crops == len(labels) == len(meta) >= 30
    assert set(labels["label"]) == set(BENCH)  # the benchmark never shows sku_new
    assert summary.class_counts["sku_new"] == 0 and sum(summary.class_counts.values()) == len(labels)
    # labels.csv, folder and metadata agree
    assert (labels["path"] == "images/" + meta["file_name"]).all()
    assert (labels["path"].str.split("/").str[1] == labels["label"]).all()
    # each crop is its frame's box (per the COCO annotations), padded, resized, same class
    coco = json.loads((bench_frames / "annotations.json").read_text())
    by_image = {im["id"]: im["file_name"] for im in coco["images"]}
    anns: dict[str, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(by_image[a["image_id"]], []).append(a)
    for row, label in zip(meta.itertuples(), labels["label"], strict=True):
        ann = anns[row.frame_file_name][row.box_index]
        assert DEFAULT_TAXONOMY.names[ann["category_id"]] == label
        assert np.allclose(ann["bbox"], [row.box_x, row.box_y, row.box_w, row.box_h])
        frame = _rgb(bench_frames / "images" / row.frame_file_name)
        x0, y0, x1, y1 = _crop_window(row.box_x, row.box_y, row.box_w, row.box_h,
                                      frame.shape[1], frame.shape[0], 0.1)
        expected = cv2.resize(frame[y0:y1, x0:x1], (SIZE, SIZE), interpolation=cv2.INTER_AREA
                              if max(y1 - y0, x1 - x0) > SIZE else cv2.INTER_LINEAR)
        crop = _rgb(out / "images" / row.file_name)
        assert crop.shape == (SIZE, SIZE, 3)
        assert np.abs(crop.astype(float) - expected).mean() < 6  # JPEG noise only
        # the object fills the crop's centre: sku packages are blue, the rest is not
        r, _, b = crop[24:40, 24:40].reshape(-1, 3).mean(0)
        assert (b > r + 40) == (label in ("sku_a", "sku_b")), (row.file_name, r, b)


def test_crops_are_deterministic_and_refuse_foreign_folders(bench_frames, bench_crops, tmp_path):
    out, _ = bench_crops
    again = tmp_path / "again"
    crops_from_detection_sample(bench_frames, again, size=SIZE, taxonomy=DEFAULT_TAXONOMY)

    def digest(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != "crops.json"}

    assert digest(again) == digest(out)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not crops"):
        crops_from_detection_sample(bench_frames, foreign, taxonomy=DEFAULT_TAXONOMY)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_crops_from_a_yolo_only_sample_with_a_broken_frame(bench_frames, bench_crops, tmp_path):
    out, summary = bench_crops
    yolo = tmp_path / "yolo"
    shutil.copytree(bench_frames, yolo)
    (yolo / "annotations.json").unlink()
    (yolo / "images" / "broken.jpg").write_bytes(b"")
    (yolo / "labels" / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    again = crops_from_detection_sample(yolo, tmp_path / "crops", size=SIZE, taxonomy=DEFAULT_TAXONOMY)
    assert again.n_crops == summary.n_crops and again.class_counts == summary.class_counts
    assert again.frames_quarantined == {"empty_file": 1}
    assert (pd.read_csv(tmp_path / "crops" / "labels.csv") == pd.read_csv(out / "labels.csv")
            ).all().all()


def test_frames_whose_names_flatten_alike_keep_every_crop(bench_frames, tmp_path):
    """``café.jpg`` / ``caf_.jpg`` and ``sub/x.jpg`` / ``sub__x.jpg`` flatten to one readable
    stem; each frame's crops still get their own files, and every box is counted once. (The
    frames are distinct images with the same boxes, so box k of both frames of a pair has the
    same class: the same folder and, flattened alone, the same crop name.)"""
    names = ["café.jpg", "caf_.jpg", "sub/x.jpg", "sub__x.jpg"]
    sources = sorted((bench_frames / "images").glob("*.jpg"))[:len(names)]
    boxes = (bench_frames / "labels" / sources[0].with_suffix(".txt").name).read_text()
    sample = tmp_path / "sample"
    for name, src in zip(names, sources, strict=True):
        (sample / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        (sample / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, sample / "images" / name)
        (sample / "labels" / name).with_suffix(".txt").write_text(boxes)
    shutil.copyfile(bench_frames / "data.yaml", sample / "data.yaml")
    n_boxes = len(names) * len(boxes.splitlines())

    summary = crops_from_detection_sample(sample, tmp_path / "crops", size=SIZE,
                                          taxonomy=DEFAULT_TAXONOMY)
    labels = pd.read_csv(tmp_path / "crops" / "labels.csv")
    meta = pd.read_parquet(tmp_path / "crops" / "metadata.parquet")
    on_disk = sorted(p.relative_to(tmp_path / "crops").as_posix()
                     for p in (tmp_path / "crops" / "images").rglob("*.jpg"))
    assert summary.n_frames == len(names) and not summary.frames_quarantined
    # counts conserved: every box is a crop file or a counted skip, and no file was overwritten
    assert summary.n_crops + sum(summary.skipped.values()) == n_boxes
    assert summary.n_crops == len(labels) == len(meta) == len(on_disk) == labels["path"].nunique()
    assert sorted(labels["path"]) == on_disk
    assert set(meta["frame_file_name"]) == set(names)
    per_frame = meta.groupby("frame_file_name")["file_name"].apply(
        lambda files: {f.split("/", 1)[1].rsplit("_b", 1)[0] for f in files})
    stems = [per_frame[name] for name in names]
    assert all(len(s) == 1 for s in stems) and len(set().union(*stems)) == len(names)
    assert {s.pop().rsplit("-", 1)[0] for s in stems} == {"caf_", "sub__x"}  # still readable


def test_crops_carry_the_frame_slices_and_box_properties(prod_crops):
    frames, out = prod_crops
    meta = pd.read_parquet(out / "metadata.parquet")
    frame_meta = pd.read_parquet(frames / "metadata.parquet").set_index("file_name")
    boxes = pd.read_parquet(frames / "boxes_metadata.parquet").set_index(
        ["file_name", "box_index"])
    for col in ("site", "camera", "shift", "week", "lighting", "blur", "lens", "captured_at",
                "occluded", "truncated", "area_px", "frame_file_name", "frame_image_id"):
        assert col in meta.columns, col
    joined = frame_meta.loc[meta["frame_file_name"]]
    for col in ("camera", "shift", "week", "lighting", "blur", "lens", "jpeg_quality"):
        assert (joined[col].to_numpy() == meta[col].to_numpy()).all(), col
    truth = boxes.loc[list(zip(meta["frame_file_name"], meta["box_index"], strict=True))]
    assert np.allclose(truth["occluded"].to_numpy(float), meta["occluded"].to_numpy(float),
                       atol=1e-6)
    # edge cases survive into the crops: later weeks, night or dim frames, the look-alike pair
    assert meta["week"].nunique() > 1
    assert {"sku_a", "sku_b"} <= set(meta["file_name"].str.split("/").str[0])


# ----------------------------------------------------------------------------- reading
def test_read_csv_and_imagefolder_agree_and_the_split_keeps_frames_whole(prod_crops, tmp_path):
    _, out = prod_crops
    images, quarantine = read_classification_sample(out, taxonomy=DEFAULT_TAXONOMY)
    assert quarantine.empty
    assert list(images.columns[:7]) == ["image_id", "file_name", "path", "label", "label_name",
                                        "width", "height"]
    assert images["image_id"].str.fullmatch(r"[0-9a-f]{16}").all() and images["image_id"].is_unique
    assert (images["label"] == images["label_name"].map(DEFAULT_TAXONOMY.id_of)).all()
    assert {"camera", "shift", "lighting", "occluded", "brightness", "size_bin"} <= set(
        images.columns)
    assert "brightness_bin" in images.columns  # pixel slices always, beside the metadata
    assert set(images["split"]) == {"finetune", "eval"}
    # crops of one frame (and near-duplicate frames of a burst) never straddle the split
    assert (images.groupby("group_id")["split"].nunique() == 1).all()
    assert (images.groupby("frame_image_id")["group_id"].nunique() == 1).all()
    # same sample as an ImageFolder without labels.csv: same ids, labels and split
    folder = tmp_path / "folder"
    shutil.copytree(out, folder)
    (folder / "labels.csv").unlink()
    images2, q2 = read_classification_sample(folder, taxonomy=DEFAULT_TAXONOMY)
    assert q2.empty
    cols = ["image_id", "file_name", "label", "split", "group_id"]
    assert images2[cols].equals(images[cols])
    stats = sample_stats(images, quarantine)
    assert stats["images"] == len(images) and sum(stats["per_class"].values()) == len(images)


def test_bad_input_is_quarantined_with_reasons(bench_crops, tmp_path):
    src, _ = bench_crops
    good = sorted((src / "images" / "person").glob("*.jpg"))[:2]
    root = tmp_path / "sample"
    (root / "images" / "person").mkdir(parents=True)
    (root / "images" / "cat").mkdir()
    for p in good:
        shutil.copy(p, root / "images" / "person" / p.name)
    (root / "images" / "person" / "empty.jpg").write_bytes(b"")
    (root / "images" / "person" / "text.jpg").write_text("not an image at all")
    shutil.copy(good[0], root / "images" / "cat" / "whiskers.jpg")
    shutil.copy(good[1], root / "images" / "loose.jpg")
    shutil.copy(good[0], root / "images" / "person" / "zz_copy.jpg")  # same bytes as good[0]
    (tmp_path / "outside.jpg").write_bytes(good[0].read_bytes())

    images, q = read_classification_sample(root, taxonomy=DEFAULT_TAXONOMY)  # ImageFolder
    assert sorted(images["file_name"]) == sorted(f"person/{p.name}" for p in good)
    reasons = dict(zip(q["source"], q["reason_code"], strict=True))
    assert reasons == {"images/person/empty.jpg": "empty_file",
                       "images/person/text.jpg": "undecodable_image",
                       "images/cat/whiskers.jpg": "unknown_label",
                       "images/loose.jpg": "missing_label",
                       "images/person/zz_copy.jpg": "duplicate_image"}
    assert q.set_index("source").loc["images/cat/whiskers.jpg", "reason"].count("'cat'") == 1
    assert (q["stage"] == "ingestion").all() and (q["level"] == "image").all()

    (root / "labels.csv").write_text(
        "path,label\n"
        f"images/person/{good[0].name},person\n"
        f"images/person/{good[1].name},sku_b\n"      # label from the CSV, not the folder
        "../outside.jpg,person\n"                    # leaves the sample folder
        f"{tmp_path / 'outside.jpg'},person\n"      # absolute, outside
        "images/person/text.jpg,person\n"
        f"images/cat/whiskers.jpg,cat\n"
        "images/person/missing.jpg,box\n"
        f"images/person/{good[0].name},person\n")    # listed twice
    images, q = read_classification_sample(root, taxonomy=DEFAULT_TAXONOMY)  # labels.csv
    assert dict(zip(images["file_name"], images["label_name"], strict=True)) == {
        f"person/{good[0].name}": "person", f"person/{good[1].name}": "sku_b"}
    by_line = {int(r.line): r.reason_code for r in q.itertuples()}
    assert by_line == {4: "path_escape", 5: "path_escape", 6: "undecodable_image",
                       7: "unknown_label", 8: "missing_file", 9: "duplicate_row"}
    assert all("labels.csv line" in r for r in q["reason"] if "line" in r)


# ----------------------------------------------------------------------------- the adapter
def _checkpoint(path: Path, class_names: list[str], seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    model = create_timm_model(TINY, len(class_names))
    save_checkpoint(checkpoint_dict(model, model_name=TINY, class_names=class_names,
                                    input_size=SIZE, mean=[0.5] * 3, std=[0.25] * 3), path)
    return path


@pytest.mark.slow
def test_predict_maps_onto_the_operational_taxonomy(bench_sample, tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt", ["human", "person", "sku_a", "cat"])
    cmap = {"human": "person", "person": "person", "sku_a": "sku_a"}  # cat: no mapping
    clf = TimmClassifier.from_weights(ckpt, class_map=cmap, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    images = [_rgb(p) for p in bench_sample["path"][:6]] + [np.zeros((17, 31, 3), np.uint8)]
    probs = clf.predict(images)
    assert probs.shape == (7, len(DEFAULT_TAXONOMY)) and probs.dtype == np.float64
    assert np.allclose(probs.sum(axis=1), 1.0)
    unmapped = [DEFAULT_TAXONOMY.id_of(n) for n in DEFAULT_TAXONOMY.names
                if n not in ("person", "sku_a")]
    assert (probs[:, unmapped] == 0).all()
    z = clf.logits(images)[:, :3]  # softmax over the mapped model classes only
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    assert np.allclose(probs[:, 0], soft[:, 0] + soft[:, 1], atol=1e-5)
    assert np.allclose(probs[:, 4], soft[:, 2], atol=1e-5)
    emb = clf.embed(images)
    assert emb.shape[0] == 7 and emb.ndim == 2 and np.isfinite(emb).all()
    exported = clf.export(tmp_path / "export")
    assert exported.suffix == ".torchscript" and exported.stat().st_size > 0
    with pytest.raises(Exception, match="does not have"):
        TimmClassifier.from_weights(ckpt, class_map={"dog": "person"}, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    with pytest.raises(Exception, match="not a Preflight timm checkpoint|cannot read"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"garbage")
        TimmClassifier.from_weights(bad, taxonomy=DEFAULT_TAXONOMY)


@pytest.mark.slow
def test_train_resume_after_interruption_matches_an_uninterrupted_run(bench_sample, tmp_path):
    import torch

    settings = ClassifierTraining(classes=BENCH, epochs=2, batch=16, lr=2e-3, input_size=SIZE,
                                  seed=0, device="cpu")

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupt

    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        train_classifier(TINY, bench_sample, run, settings, on_epoch_end=stop_after_first,
                         taxonomy=DEFAULT_TAXONOMY)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["train_state"]["epoch"] == 1 and (run / "best.pt").is_file()
    seen: list[int] = []
    result = train_classifier(TINY, bench_sample, run, settings,
                              on_epoch_end=lambda e, r: seen.append(e), taxonomy=DEFAULT_TAXONOMY)
    assert seen == [2]  # continued from the saved epoch
    assert list(result.history["epoch"]) == [1, 2] and result.epochs_run == 2
    assert {"accuracy", "loss", "best_accuracy", "best_epoch"} <= set(result.metrics)
    assert "train/loss" in result.final_train_loss
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]
    # a finished run with the same settings is not retrained
    seen.clear()
    again = train_classifier(TINY, bench_sample, run, settings,
                             on_epoch_end=lambda e, r: seen.append(e), taxonomy=DEFAULT_TAXONOMY)
    assert seen == [] and again.epochs_run == 2
    # resuming is exact: same weights as a run that was never interrupted
    straight = train_classifier(TINY, bench_sample, tmp_path / "straight", settings,
                                taxonomy=DEFAULT_TAXONOMY)
    a = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(straight.last_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    clf = TimmClassifier.from_weights(result.checkpoint, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    assert clf.class_names == BENCH and clf.input_size == SIZE
    assert set(clf.id_map.values()) == set(range(6))  # sku_new: no model class


@pytest.mark.slow
def test_freeze_modes_train_what_they_say(bench_sample, tmp_path):
    import torch

    from preflight.environment import import_albumentations

    A = import_albumentations()  # offline-safe: no PyPI version check
    model = create_timm_model(TINY, 6)
    head = trainable_parameter_names(model, "head")
    deeper = trainable_parameter_names(model, "deeper")
    everything = trainable_parameter_names(model, "none")
    assert head == {"classifier.weight", "classifier.bias"}
    assert head < deeper < everything
    ckpt = _checkpoint(tmp_path / "start.pt", BENCH)
    start = torch.load(ckpt, weights_only=True)["state_dict"]
    # fine-tune into the 7-class taxonomy, head only, with an augmentation
    result = train_classifier(ckpt, bench_sample, tmp_path / "head",
                              ClassifierTraining(epochs=1, batch=16, freeze="head",
                                                 augment=[A.HorizontalFlip(p=0.5)], device="cpu"),
                              taxonomy=DEFAULT_TAXONOMY)
    after = torch.load(result.last_checkpoint, weights_only=True)
    assert after["class_names"] == list(DEFAULT_TAXONOMY.names) and after["num_classes"] == 7
    changed = {k for k in start if not k.startswith("classifier.")
               and not torch.equal(start[k], after["state_dict"][k])}
    assert changed == set()  # backbone weights and BatchNorm statistics untouched
    assert not torch.equal(start["classifier.weight"][:6], after["state_dict"][
        "classifier.weight"][:6])
    with pytest.raises(Exception, match="freeze must be one of"):
        train_classifier(ckpt, bench_sample, tmp_path / "x", ClassifierTraining(freeze="most"),
                         taxonomy=DEFAULT_TAXONOMY)


@pytest.mark.slow
def test_latency_spec_builds_in_a_fresh_process(tmp_path):
    from preflight.latency import ModelSpec, cold_start

    ckpt = _checkpoint(tmp_path / "lat.pt", BENCH)
    clf = TimmClassifier.from_weights(ckpt, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    clf.sha256 = sha256_file(ckpt)
    factory, kwargs = clf.latency_spec()
    assert factory == "preflight.models.timm_adapter:make_predict_fn"
    spec = ModelSpec(factory, kwargs)
    frame = np.full((48, 40, 3), 128, np.uint8)
    assert spec.build()([frame]).shape == (1, 7)
    cold = cold_start(spec, frame, timeout_s=240)
    assert cold.total_s > cold.load_s > 0 and cold.first_predict_s > 0
    with pytest.raises(ChecksumError):
        ModelSpec(factory, {**kwargs, "sha256": "0" * 64}).build()


# ----------------------------------------------------------------------------- candidates + zoo
@pytest.mark.slow
def test_default_classifier_candidates_build_and_run():
    import torch

    cands = load_candidates(REPO / "config" / "candidates_classify.yaml")
    assert [c.name for c in cands] == ["mobilenetv3_small_100", "mobilenetv3_large_100",
                                       "efficientnet_lite0", "mobilevit_xs"]
    for c in cands:
        assert c.family == "timm" and c.task == "classify" and c.is_zoo and c.arch == c.name
        assert c.model_classes == BENCH and unmapped_classes(c, DEFAULT_TAXONOMY) == ["sku_new"]
        model = create_timm_model(c.arch, len(c.model_classes)).eval()
        with torch.inference_mode():
            out = model(torch.zeros(2, 3, c.input_size, c.input_size))
        assert out.shape == (2, 6), c.name


def test_unknown_arch_and_hub_class_names():
    from preflight.models.timm_model import hub_class_names

    with pytest.raises(Exception, match="not a timm model name"):
        create_timm_model("mobilenetv9_tiny")
    names = hub_class_names(create_timm_model("mobilenetv3_small_050"))  # ImageNet head, offline
    assert len(names) == 1000 and len(set(names)) == 1000
    assert {"forklift", "carton", "crate"} <= set(names)


def test_candidate_freeze_is_validated():
    doc = {"candidates": [{"name": "m", "family": "timm", "weights": "zoo:m", "arch": TINY,
                           "input_size": 64, "class_map": {"person": "person"},
                           "freeze": "head"}]}
    assert parse_candidates(doc, taxonomy=DEFAULT_TAXONOMY)[0].freeze == "head"
    doc["candidates"][0]["freeze"] = "all"
    with pytest.raises(CandidateError, match="freeze must be one of"):
        parse_candidates(doc, taxonomy=DEFAULT_TAXONOMY)
    doc["candidates"][0].update(family="ultralytics", freeze="head")
    with pytest.raises(CandidateError, match="unknown key"):
        parse_candidates(doc, taxonomy=DEFAULT_TAXONOMY)


@pytest.fixture(scope="module")
def timm_zoo(bench_frames, tmp_path_factory):
    cand = parse_candidates({"candidates": [{
        "name": "tiny_cls", "family": "timm", "weights": "zoo:tiny_cls", "arch": TINY,
        "input_size": SIZE, "class_map": {n: n for n in BENCH},
        "freeze": "deeper", "zoo_train": {"epochs": 1, "batch": 16}}]}, taxonomy=DEFAULT_TAXONOMY)[0]
    zoo_dir = tmp_path_factory.mktemp("zoo")
    manifest = build_zoo(zoo_dir, [cand], ZooBuild(seed=0, device="cpu", progress=False),
                         data_dir=bench_frames)
    return zoo_dir, manifest, cand


@pytest.mark.slow
def test_zoo_builds_a_timm_candidate_and_loads_it_checked(timm_zoo, bench_frames):
    zoo_dir, manifest, cand = timm_zoo
    ckpt = zoo_dir / "tiny_cls.pt"
    entry = json.loads((zoo_dir / "manifest.json").read_text())["models"]["tiny_cls"]
    assert entry["sha256"] == sha256_file(ckpt) == manifest.models["tiny_cls"]["sha256"]
    assert entry["family"] == "timm" and entry["task"] == "classify" and entry["arch"] == TINY
    assert entry["model_classes"] == BENCH and entry["train"]["pretrained"] is False
    assert entry["config"]["data_fingerprint"] == entry["data"]["fingerprint"]
    assert entry["data"]["train_images"] + entry["data"]["val_images"] >= 30
    assert {"timm", "torch"} <= set(entry["versions"]) and "accuracy" in entry["heldout_val"]
    clf = TimmClassifier.from_candidate(cand, zoo_dir, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    assert clf.weights_source == "zoo" and clf.sha256 == entry["sha256"]
    assert clf.default_freeze == "deeper"  # the candidate's fine-tuning default
    # cached rebuild
    again = build_zoo(zoo_dir, [cand], ZooBuild(seed=0, device="cpu", progress=False),
                      data_dir=bench_frames)
    assert again.last_build["cached"] == ["tiny_cls"]
    original = ckpt.read_bytes()
    ckpt.write_bytes(original + b"tampered")
    try:
        with pytest.raises(ChecksumError, match="manifest records"):
            TimmClassifier.from_candidate(cand, zoo_dir, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    finally:
        ckpt.write_bytes(original)
    with pytest.raises(Exception, match="family 'timm'"):
        from preflight.models.ultralytics_adapter import UltralyticsDetector

        UltralyticsDetector.from_candidate(cand, zoo_dir, taxonomy=DEFAULT_TAXONOMY)
    with pytest.raises(Exception, match="not 'timm'"):
        TimmClassifier.from_candidate(replace(cand, family="ultralytics"), zoo_dir, taxonomy=DEFAULT_TAXONOMY)


@pytest.mark.slow
def test_classification_metrics_run_on_the_predictions(timm_zoo, prod_crops):
    from preflight.metrics.classification import classification_confusion, evaluate_classification

    zoo_dir, _, cand = timm_zoo
    images, _ = read_classification_sample(prod_crops[1], taxonomy=DEFAULT_TAXONOMY)
    clf = TimmClassifier.from_candidate(cand, zoo_dir, device="cpu", taxonomy=DEFAULT_TAXONOMY)
    probs = clf.predict([_rgb(p) for p in images["path"]])
    names = dict(enumerate(DEFAULT_TAXONOMY.names))
    table = evaluate_classification(images["label"], probs=probs, images=images,
                                    slice_columns=["camera", "shift"], class_names=names)
    overall = table[(table["slice_column"] == "__all__") & (table["metric"] == "accuracy")].iloc[0]
    correct = int((probs.argmax(1) == images["label"].to_numpy()).sum())
    assert overall["value"] == pytest.approx(correct / len(images))
    assert overall["ci_low"] <= overall["value"] <= overall["ci_high"]  # Wilson
    assert overall["n_images"] == len(images)
    assert {"camera", "shift"} <= set(table["slice_column"])
    assert {"ECE", "macro_F1", "recall.sku_new", "precision.sku_a"} <= set(table["metric"])
    confusion = classification_confusion(images["label"], probs=probs, class_names=names)
    assert confusion["count"].sum() == len(images)
