"""Progress with the time left (terminal bar + run-log lines), the zoo's rebuild reasons, and the
training resources / held-out validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.finetune import FinetuneDataError, holdout_ids, write_yolo_view
from preflight.models.training import epoch_progress, training_resources
from preflight.models.zoo import Manifest, rebuild_reason, sha256_file
from preflight.progress import Progress, format_seconds
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_done_total_and_time_left_at_intervals():
    clock, lines = Clock(), []
    bar = Progress(10, "evaluate m", unit="batches", report=lines.append, every_s=30, clock=clock)
    assert "estimating" in bar.line()
    clock.now += 10
    bar.update(2)                       # 10 s since the start: under the interval, no line
    assert lines == []
    clock.now += 20
    bar.update(1)                       # 30 s: 3 of 10 done at 10 s each -> 70 s left
    assert lines == ["evaluate m: 3/10 batches (30%), 30s elapsed, about 1m10s left"]
    clock.now += 5
    bar.update(6)                       # not yet 30 s since the last line
    assert len(lines) == 1
    clock.now += 5
    bar.update(1)                       # finished: always reported
    assert lines[-1] == "evaluate m: 10/10 batches (100%), 40s elapsed, done"
    bar.close()


def test_progress_without_a_known_total_counts_only():
    clock, lines = Clock(), []
    bar = Progress(0, "stress", unit="batches", report=lines.append, every_s=0, clock=clock)
    clock.now += 3
    bar.update(1)
    assert lines == ["stress: 1 batches, 3s elapsed"] and bar.eta() is None


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_epoch_progress_callbacks_give_a_line_per_epoch():
    lines = []
    cbs = epoch_progress("training m", lines.append)

    class Trainer:
        epochs, start_epoch = 3, 1          # resumed after one epoch: two left

    cbs["on_train_start"](Trainer())
    cbs["on_train_epoch_end"](Trainer())
    cbs["on_train_epoch_end"](Trainer())
    assert len(lines) == 2 and lines[0].startswith("training m: 1/2 epochs (50%)")
    assert lines[1].endswith("done")


def test_training_resources_use_workers_and_amp_on_cuda_only():
    workers, amp = training_resources("cuda:0")
    assert workers >= 1 and amp is True
    assert training_resources("cpu") == (0, False)


# --------------------------------------------------------------------------- zoo rebuild reason
def _entry(tmp_path, config):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    manifest = Manifest(zoo_dir=tmp_path, models={"m": {"sha256": sha256_file(ckpt),
                                                       "config": config}})
    return manifest, ckpt


def test_rebuild_reason_names_what_changed(tmp_path):
    config = {"arch": "yolov8n.yaml", "train": {"epochs": 10, "batch": 16},
              "data_fingerprint": "abc"}
    manifest, ckpt = _entry(tmp_path, config)
    assert rebuild_reason(manifest, "m", config, ckpt) is None
    changed = {**config, "train": {"epochs": 12, "batch": 16, "lr0": 0.01}}
    why = rebuild_reason(manifest, "m", changed, ckpt)
    assert why == ("its settings changed since it was built: train.epochs: 10 -> 12; "
                   "train.lr0: (not set) -> 0.01")
    assert "forced" in rebuild_reason(manifest, "m", config, ckpt, force=True)
    assert "not in the manifest" in rebuild_reason(manifest, "other", config, ckpt)
    ckpt.write_bytes(b"replaced")
    assert "no longer has the sha256" in rebuild_reason(manifest, "m", config, ckpt)
    ckpt.unlink()
    assert "is missing" in rebuild_reason(manifest, "m", config, ckpt)


def test_zoo_build_logs_the_reason_before_training(tmp_path, caplog):
    """The reason goes to the log and to ``report`` (a Dagster run log) before any training."""
    from preflight.models import zoo as zoo_mod

    config = {"train": {"epochs": 1}}
    manifest, ckpt = _entry(tmp_path, config)
    reported, reasons = [], {}
    assert zoo_mod._up_to_date(manifest, "m", {"train": {"epochs": 2}}, ckpt, False,
                               reported.append, reasons) is False
    assert reported == ["zoo: (re)building m because its settings changed since it was built: "
                        "train.epochs: 1 -> 2"]
    assert reasons == {"m": "its settings changed since it was built: train.epochs: 1 -> 2"}
    assert any("train.epochs: 1 -> 2" in r.getMessage() for r in caplog.records)
    assert zoo_mod._up_to_date(manifest, "m", config, ckpt, False, reported.append, {}) is True
    assert len(reported) == 1


# --------------------------------------------------------------------------- held-out validation
def _pool(tmp_path, n=20, groups=None):
    rows = []
    for i in range(n):
        path = tmp_path / f"f{i}.jpg"
        path.write_bytes(b"x")
        rows.append({"image_id": f"img{i}", "path": str(path), "width": 64, "height": 48,
                     "split": "finetune"})
    images = pd.DataFrame(rows)
    if groups is not None:
        images["group_id"] = groups
    boxes = pd.DataFrame({"image_id": images["image_id"], "class_id": 0, "x": 1.0, "y": 1.0,
                          "w": 10.0, "h": 10.0})
    return images, boxes


def test_validation_images_are_disjoint_from_training_images(tmp_path):
    images, boxes = _pool(tmp_path, groups=[f"g{i // 4}" for i in range(20)])
    data = write_yolo_view(images, boxes, DEFAULT_TAXONOMY, tmp_path / "view", seed=3)
    import yaml

    spec = yaml.safe_load(data.read_text())
    assert spec["val"] == "images/val" and spec["train"] == "images/train"
    train = {p.stem for p in (tmp_path / "view/images/train").iterdir()}
    val = {p.stem for p in (tmp_path / "view/images/val").iterdir()}
    assert val and train and not (train & val) and train | val == set(images["image_id"])
    # whole near-duplicate groups are held out: no frame's twin is trained on
    group = dict(zip(images["image_id"], images["group_id"], strict=True))
    assert not ({group[i] for i in train} & {group[i] for i in val})
    assert len(val) == 4                          # 15% of 20 = 3 -> one whole group of 4


def test_holdout_needs_two_images_and_keeps_training_images(tmp_path):
    images, _ = _pool(tmp_path, n=2)
    held = holdout_ids(images, 0.9, seed=0)
    assert len(held) == 1                          # never all of them
    with pytest.raises(FinetuneDataError, match="at least 2"):
        holdout_ids(images.iloc[:1], 0.15)
    assert holdout_ids(images, 0.0) == set()
    assert holdout_ids(images, 0.15, seed=1) == holdout_ids(images, 0.15, seed=1)
    np.testing.assert_equal(len(holdout_ids(_pool(tmp_path, n=40)[0], 0.15)), 6)
