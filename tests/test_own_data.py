"""A user's own sample, classes and checkpoints: the family registry, one taxonomy from the
settings, `preflight init`'s proposals, augmentation from measured failures and a split that
keeps the frames of one clip together without timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from own_world import CLASSES, make_world

from preflight.config import load_settings
from preflight.models.candidates import CandidateError, parse_candidates, unmapped_classes
from preflight.models.registry import FAMILIES, FamilyError, ModelFamily, adapter_for, get_family
from preflight.taxonomy import Taxonomy

TAXONOMY = Taxonomy(CLASSES)


def _doc(**over):
    cand = {"name": "m", "family": "ultralytics", "weights": "m.pt", "input_size": 640,
            "class_map": {"person": "worker", "car": "cart", "truck": "cart", "box": "crate"}}
    return {"candidates": [{**cand, **over}]}


# ------------------------------------------------------------------------------ registry
def test_every_family_is_a_registry_row_with_an_importable_adapter():
    assert {"ultralytics", "timm"} <= set(FAMILIES)
    for name, family in FAMILIES.items():
        assert family.name == name
        adapter = adapter_for(name)
        for method in ("from_candidate", "from_weights", "predict", "train", "export",
                       "latency_spec"):
            assert callable(getattr(adapter, method)), (name, method)
    assert get_family("timm").task == "classify" and get_family("ultralytics").task == "detect"
    with pytest.raises(FamilyError, match="unknown model family 'yolo'; known: "):
        get_family("yolo")
    with pytest.raises(FamilyError, match="task"):
        ModelFamily(name="x", task="segment", adapter="m:C")


def test_candidates_validate_against_the_settings_taxonomy_many_to_one():
    cand = parse_candidates(_doc(), taxonomy=TAXONOMY)[0]
    assert cand.operational_ids(TAXONOMY) == {"person": 0, "car": 1, "truck": 1, "box": 2}
    assert unmapped_classes(cand, TAXONOMY) == ["drone"]  # no analog in pre-training
    # a model class mapped to null is dropped on purpose
    dropped = parse_candidates(_doc(class_map={"person": "worker", "dog": None}),
                               taxonomy=TAXONOMY)[0]
    assert dropped.class_map == {"person": "worker"}
    with pytest.raises(CandidateError, match=r"unknown operational class\(es\) \['vehicle'\]; "
                                             r"the taxonomy is \['worker', 'cart'"):
        parse_candidates(_doc(class_map={"car": "vehicle"}), taxonomy=TAXONOMY)
    with pytest.raises(CandidateError, match="unknown family 'yolo'"):
        parse_candidates(_doc(family="yolo"), taxonomy=TAXONOMY)


def test_an_empty_taxonomy_is_a_clear_error_when_a_run_needs_it(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("evaluation: {bootstrap: 10}\n")
    settings = load_settings(path)
    with pytest.raises(ValueError, match="taxonomy is empty: list your classes"):
        settings.taxonomy_obj  # noqa: B018
    path.write_text("taxonomy: [a, b]\ndecision: {lookalike_pairs: [[a, c]]}\n")
    with pytest.raises(ValueError, match=r"look-alike pair \['a', 'c'\]"):
        load_settings(path)


# ------------------------------------------------------------------------------ init
def test_class_map_proposal_exact_then_case_and_plural_insensitive():
    from preflight.init import propose_class_map

    p = propose_class_map(["worker", "Carts", "CRATES", "bicycle", "cart"], CLASSES)
    assert p.class_map == {"worker": "worker", "Carts": "cart", "CRATES": "crate",
                           "cart": "cart"}
    assert p.fuzzy == {"Carts": "cart", "CRATES": "crate"}
    assert p.unmatched_model_classes == ("bicycle",) and p.no_analog == ("drone",)
    assert propose_class_map(["batteries"], ["battery"]).class_map == {"batteries": "battery"}


def test_init_writes_settings_that_load_from_a_coco_folder_without_metadata(tmp_path):
    from preflight.init import candidates_document, inspect_sample, settings_document

    root = make_world(tmp_path / "sample", n_clips=2, frames=2)
    sample = inspect_sample(root)
    assert (sample.format, sample.class_names, sample.n_images) == ("coco", CLASSES, 4)
    assert sample.metadata_path is None and sample.metadata_columns == ()
    (tmp_path / "preflight.yaml").write_text(settings_document(sample))
    settings = load_settings(tmp_path / "preflight.yaml")
    assert settings.taxonomy == list(CLASSES) and settings.validation.required_columns == {}
    assert settings.evaluation.slice_columns == [] and settings.data.landing_dir == str(root)
    assert "input_px_bin" in settings.evaluation.box_slice_columns
    from preflight.init import CheckpointInfo

    doc = candidates_document([CheckpointInfo(tmp_path / "my model.pt", "ultralytics",
                                              ("Workers", "car", "crate"), 320)], CLASSES)
    assert "# unmatched model classes (dropped unless you map them): car" in doc
    assert "# no analog in pre-training: cart, drone" in doc
    (tmp_path / "candidates.yaml").write_text(doc)
    from preflight.models.candidates import load_candidates

    (cand,) = load_candidates(tmp_path / "candidates.yaml", taxonomy=settings.taxonomy_obj)
    assert cand.name == "my-model" and cand.class_map == {"Workers": "worker", "crate": "crate"}


def test_init_gives_each_candidate_a_learning_curve_and_exports_what_can_be_exported(tmp_path):
    """A user's pass routes rows that still fail after fine-tuning by their learning curves, and
    validates the exported / INT8 artefact that usually ships: init lists every candidate for
    the first and the exportable families' candidates for the second."""
    from preflight.init import inspect_sample, settings_document
    from preflight.models.registry import FAMILIES

    sample = inspect_sample(make_world(tmp_path / "sample", n_clips=2, frames=2))
    families = [name for name, row in FAMILIES.items() if not row.runs_artefact]
    candidates = [(f"site-{i}", family) for i, family in enumerate(families)]
    (tmp_path / "preflight.yaml").write_text(settings_document(sample, candidates=candidates))
    settings = load_settings(tmp_path / "preflight.yaml")
    assert settings.finetune.learning_curve_candidates == [name for name, _ in candidates]
    assert settings.export.candidates == [name for name, family in candidates
                                          if FAMILIES[family].exportable]
    assert settings.export.candidates and settings.export.formats == ["onnx_fp32", "onnx_int8"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(settings_document(sample))  # no checkpoints yet: nothing listed
    assert load_settings(bare).export.candidates == []


# ------------------------------------------------------------------------------ augmentation
def test_augmentation_follows_what_the_failing_slice_measures_not_its_name():
    from preflight.finetune import augmentation_policy

    images = pd.DataFrame({"zone": ["a"] * 6 + ["b"] * 4,
                           "brightness": [0.5] * 6 + [0.1] * 4,
                           "contrast": [0.15] * 10, "sharpness": [900.0] * 10,
                           "colour_cast": [0.01] * 10})
    failing = pd.DataFrame({"slice_column": ["zone"], "slice_value": ["b"]})
    policy = augmentation_policy(failing, images)
    names = [n for n, _ in policy.transforms]
    assert "RandomBrightnessContrast" in names and "GaussNoise" in names
    assert any("dark frames fail" in r and "zone=b" in r for r in policy.reasons)
    # the same failure under any other name, or stated as the pixel bin, gives the same policy
    renamed = augmentation_policy(failing.assign(slice_column="site"), images.rename(
        columns={"zone": "site"}))
    assert renamed.transforms == policy.transforms
    direct = augmentation_policy(pd.DataFrame({"slice_column": ["brightness_bin"],
                                               "slice_value": ["low"]}))
    assert [n for n, _ in direct.transforms] == names
    # a failing slice that measures like the rest gets only the always-on mild defaults
    plain = augmentation_policy(pd.DataFrame({"slice_column": ["zone"], "slice_value": ["a"]}),
                                images)
    assert [n for n, _ in plain.transforms] == ["ImageCompression", "RGBShift"]
    occluded = augmentation_policy(pd.DataFrame({"slice_column": ["occluded_bin"],
                                                 "slice_value": ["over_half"]}))
    assert "CoarseDropout" in [n for n, _ in occluded.transforms]


# ------------------------------------------------------------------------------ split
def test_consecutive_frames_of_a_clip_never_straddle_the_split_without_timestamps(tmp_path):
    from preflight.data.ingest import ingest

    root = make_world(tmp_path / "clips", n_clips=10, frames=5)
    res = ingest(root, taxonomy=TAXONOMY, eval_fraction=0.3)
    images = res.images.assign(clip=res.images["file_name"].str.slice(0, 6))
    assert "captured_at" not in images.columns
    per_clip = images.groupby("clip").agg(splits=("split", "nunique"),
                                          groups=("group_id", "nunique"))
    assert (per_clip["splits"] == 1).all(), per_clip
    assert (per_clip["groups"] == 1).all()          # one clip, one near-duplicate group
    assert images["group_id"].nunique() >= 8         # distinct clips stay distinct groups
    assert set(images["split"]) == {"eval", "finetune"}
    # the same frames named in another order give the same groups and split (no file order)
    again = ingest(root, taxonomy=TAXONOMY, eval_fraction=0.3).images
    pd.testing.assert_series_equal(again["split"], res.images["split"])


def test_phash_groups_chain_near_duplicates_and_ignore_order():
    from preflight.data.ingest import phash_groups

    base = 0x0F0F_0F0F_0F0F_0F0F
    hashes = [f"{base:016x}", f"{base ^ 0b111:016x}", f"{base ^ 0b111_1111_0000:016x}",
              f"{~base & (2**64 - 1):016x}"]
    ids = pd.Series(["d", "c", "b", "a"])
    groups = phash_groups(pd.Series(hashes), ids, max_bits=8)
    assert groups[0] == groups[1] == groups[2] != groups[3]  # 0~1 (3 bits), 1~2 (7 bits)
    shuffled = phash_groups(pd.Series(hashes[::-1]), ids[::-1].reset_index(drop=True), 8)
    assert sorted(shuffled) == sorted(groups)
    assert groups[0] == "p:b" and groups[3] == "p:a"


def test_pixel_and_object_size_slices_are_always_evaluated():
    from preflight.config import EvaluationSettings
    from preflight.evaluation import EvaluationSpec

    spec = EvaluationSpec.from_settings(EvaluationSettings(slice_columns=["zone"],
                                                           box_slice_columns=[]))
    assert spec.slice_columns == ("zone", "brightness_bin", "contrast_bin", "sharpness_bin",
                                  "colour_cast_bin")
    assert spec.box_slice_columns == ("size_bin", "input_size_bin", "input_px_bin")


def test_this_world_shares_no_class_name_with_the_generator():
    from preflight.synth.scene import CLASS_NAMES

    assert not set(CLASS_NAMES) & set(CLASSES)


@pytest.mark.parametrize("input_size", [320, 1280])
def test_frames_from_320x240_to_1920x1080_at_input_sizes_up_to_1280(tmp_path, input_size):
    """An (untrained) yolov8n letterboxes any frame to its input size and answers in the
    frame's own pixels; ingestion reads both frame sizes."""
    from preflight.data.ingest import ingest
    from preflight.models.ultralytics_adapter import UltralyticsDetector
    from preflight.models.ultralytics_env import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    yolo = YOLO("yolov8n.yaml")
    yolo.model.names = {0: "pallet-like", 1: "vehicle-like"}
    det = UltralyticsDetector(yolo, name="untrained", input_size=input_size,
                              class_map={"pallet-like": "crate", "vehicle-like": "cart"},
                              weights="yolov8n.yaml", taxonomy=TAXONOMY, conf=0.0,
                              device="cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
              for w, h in ((320, 240), (1920, 1080))]
    for frame, out in zip(frames, det.predict(frames), strict=True):
        assert set(out["class_id"]) <= {1, 2}
        assert (out["x"] >= -1).all() and (out["x"] + out["w"] <= frame.shape[1] + 1).all()
        assert (out["y"] + out["h"] <= frame.shape[0] + 1).all()
    if input_size == 1280:
        big = make_world(tmp_path / "big", n_clips=1, frames=2, size=(1920, 1080))
        small = make_world(tmp_path / "small", n_clips=1, frames=2, size=(320, 240))
        for root, side in ((big, 1920), (small, 320)):
            res = ingest(root, taxonomy=TAXONOMY)
            assert (res.images["width"] == side).all() and len(res.boxes)


def test_run_stops_with_one_line_before_dagster_on_a_bad_settings_file(tmp_path, monkeypatch,
                                                                       capsys):
    import argparse

    from pipeline.run import run

    monkeypatch.setenv("PREFLIGHT_CONFIG", str(tmp_path / "unused.yaml"))
    (tmp_path / "s.yaml").write_text("candidates_file: c.yaml\n")
    (tmp_path / "c.yaml").write_text("candidates: []\n")
    code = run(argparse.Namespace(config=tmp_path / "s.yaml", job="preflight_pass",
                                  log_level="INFO"))
    assert code == 2
    assert "taxonomy is empty: list your classes" in capsys.readouterr().err


# ------------------------------------------------------------------------------ a new family
def test_a_new_family_is_one_module_plus_its_registry_row(tmp_path, monkeypatch):
    """``tests/new_family.py`` (a colour-matching detector with JSON "checkpoints") plus one
    registry row: ``preflight init`` recognises its checkpoint, the candidates file accepts it,
    the registry loads it, and the detect task evaluates and fine-tunes it through the protocol
    -- nothing else in the product is edited."""
    import json

    from own_world import COLOURS

    from preflight.data.ingest import ingest
    from preflight.finetune import augmentation_policy
    from preflight.init import candidates_document, inspect_checkpoint
    from preflight.metrics.cost import CostModel
    from preflight.models.candidates import load_candidates
    from preflight.models.registry import register_family
    from preflight.tasks import task_of

    row = ModelFamily(name="colours", task="detect", adapter="new_family:ColourDetector",
                      inspect="new_family:inspect_checkpoint")
    monkeypatch.setitem(FAMILIES, "colours", row)  # register_family(row), undone afterwards
    with pytest.raises(FamilyError, match="already registered"):
        register_family(row)
    weights = tmp_path / "colours.json"
    # a "pre-trained" model that knows two classes under its own names, one colour slightly off
    weights.write_text(json.dumps({"format": "colour-detector/1", "input_size": 480, "colours": {
        "Workers": list(COLOURS["worker"]), "crates": [70, 90, 215]}}))
    info = inspect_checkpoint(weights)
    assert (info.family, info.class_names, info.input_size) == ("colours", ("Workers", "crates"),
                                                                480)
    (tmp_path / "candidates.yaml").write_text(candidates_document([info], CLASSES))
    (cand,) = load_candidates(tmp_path / "candidates.yaml", taxonomy=TAXONOMY)
    assert cand.family == "colours" and cand.class_map == {"Workers": "worker", "crates": "crate"}
    model = adapter_for("colours").from_candidate(cand, taxonomy=TAXONOMY)

    root = make_world(tmp_path / "sample", n_clips=4, frames=3)
    res = ingest(root, taxonomy=TAXONOMY, eval_fraction=0.3)
    images = res.images
    settings_path = tmp_path / "preflight.yaml"
    settings_path.write_text(f"taxonomy: {list(CLASSES)}\nfinetune: {{epochs: 1}}\n")
    settings = load_settings(settings_path)
    task = task_of(settings.task)
    eval_images = images[images["split"] == "eval"]
    gt = res.boxes[res.boxes["image_id"].isin(eval_images["image_id"])]
    from preflight.evaluation import EvaluationSpec

    spec = EvaluationSpec.from_settings(settings.evaluation)
    spec = type(spec)(**{**vars(spec), "bootstrap": 0, "min_images": 1, "min_boxes": 1})
    ev = task.call("evaluate", model.predict, eval_images, gt, spec, CostModel(),
                   TAXONOMY.as_dict())
    assert {"recall.worker", "recall.crate"} <= set(ev.metrics["metric"])

    pool = images[images["split"] == "finetune"]
    result = task.call("fine_tune", model, pool, res.boxes[res.boxes["image_id"].isin(
        pool["image_id"])], settings, out_dir=tmp_path / "train", work_dir=tmp_path / "view",
        policy=augmentation_policy(pd.DataFrame(columns=["slice_column", "slice_value"])))
    assert model.trained_on == [tmp_path / "view" / "data.yaml"]
    tuned = adapter_for("colours").from_weights(result.checkpoint, taxonomy=TAXONOMY)
    # fine-tuned on the pool it speaks the whole operational taxonomy (drone included)
    learned = json.loads(result.checkpoint.read_text())["colours"]
    assert set(learned) == set(CLASSES) and tuned.class_map == {c: c for c in CLASSES}
    assert len(tuned.predict([np.zeros((36, 48, 3), np.uint8)])[0]) == 0


def test_a_rare_class_is_both_measured_and_learned_whatever_the_seed():
    """A class in two clips only (e.g. one with no analog in pre-training) gets a clip on each
    side of the split; clips stay whole; without boxes the split is the plain stratified one."""
    from preflight.data.ingest import assign_split

    groups = [f"clip{g:02d}" for g in range(12) for _ in range(5)]
    images = pd.DataFrame({"image_id": [f"i{k:03d}" for k in range(60)], "group_id": groups,
                           "stratum": "all", "decode_ok": True})
    rare_clips = {"clip03", "clip08"}
    boxes = pd.concat([
        pd.DataFrame({"image_id": images["image_id"], "class_id": 0}),
        pd.DataFrame({"image_id": images.loc[images["group_id"].isin(rare_clips), "image_id"],
                      "class_id": 1}),
        pd.DataFrame({"image_id": images.loc[images["group_id"] == "clip05", "image_id"],
                      "class_id": 2})])                       # one clip: cannot be on both sides
    moved = 0
    for seed in range(20):
        plain = assign_split(images, eval_fraction=0.3, seed=seed)
        split = assign_split(images, eval_fraction=0.3, seed=seed, boxes=boxes)
        by_clip = split.groupby(images["group_id"]).agg(set)
        assert (by_clip.map(len) == 1).all()                  # no clip straddles the split
        rare = {next(iter(by_clip[c])) for c in rare_clips}
        assert rare == {"eval", "finetune"}, seed
        assert set(split) == {"eval", "finetune"}
        moved += int((split != plain).any())
        if {next(iter(plain.groupby(images["group_id"]).agg(set)[c])) for c in rare_clips} \
                == {"eval", "finetune"}:
            pd.testing.assert_series_equal(split, plain)      # nothing to repair: unchanged
    assert moved > 0                                           # some seeds needed the repair


def test_init_names_every_checkpoint_as_a_valid_unique_candidate(tmp_path):
    """Whatever the file names (a leading underscore, non-Latin letters, the same stem twice),
    the candidate names init writes load as candidates."""
    from preflight.init import CheckpointInfo, candidate_names, candidates_document
    from preflight.models.candidates import load_candidates
    from preflight.taxonomy import Taxonomy

    stems = ["_best", "модель", "site model", "site model", "x" * 90]
    checkpoints = [CheckpointInfo(tmp_path / f"{i}" / f"{s}.pt", "ultralytics", CLASSES, 320)
                   for i, s in enumerate(stems)]
    names = candidate_names(checkpoints)
    assert names[:4] == ["best", "model", "site-model", "site-model-2"]
    (tmp_path / "candidates.yaml").write_text(candidates_document(checkpoints, CLASSES))
    loaded = load_candidates(tmp_path / "candidates.yaml", taxonomy=Taxonomy(CLASSES))
    assert [c.name for c in loaded] == names
