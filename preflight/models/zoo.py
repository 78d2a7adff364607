"""The demo model zoo: stand-ins for public checkpoints, built offline and sha256-checked.

:func:`build_zoo` trains each ``zoo:`` candidate briefly on the clean *benchmark* synthetic profile
(the public-dataset stand-in) and stores ``<zoo>/<name>.pt`` plus ``<zoo>/manifest.json`` (sha256,
architecture, training and data settings, library versions, wall time, final train loss,
held-out mAP). A stand-in's label space is its candidate's ``class_map`` keys -- a class the
benchmark never shows is mapped by nothing ("no analog in pre-training").

``family: timm`` candidates (classifiers) are trained from scratch (``pretrained=False``) on object
crops of the same benchmark data (``preflight.data.classification_sample.crops_from_detection_sample``), with
the same manifest record; see :func:`_build_classifier`.

One build may train every stand-in, or a process per stand-in (the pass builds each candidate's
as its own Dagster asset, so the first candidate is evaluated while the next one trains): the
shared benchmark data and every manifest update are made under a lock on the zoo folder, and a
manifest update re-reads the file and changes only its own entry.

Rebuilding is cached: a candidate whose checkpoint exists with the manifest's sha256 and whose
settings are unchanged is skipped (``force=True`` retrains). An interrupted build resumes the
interrupted candidate from its last finished epoch. :func:`resolve_weights` is the only way
Preflight finds weights: the zoo folder (sha256 checked -> :class:`ChecksumError`), a local
path the user named (checked against the candidate's optional ``sha256``), or a hub name the user
named explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from preflight.config import preflight_home
from preflight.filelock import file_lock
from preflight.models.base import ChecksumError, ModelError, TrainResult, sha256_file
from preflight.models.candidates import Candidate
from preflight.synth.scene import SYNTH_TAXONOMY

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
FORMAT_VERSION = 1
#: Defaults for 2 CPU cores (the shipped settings' ``zoo``): with the schedule below, 6 epochs
#: of 8-image batches give a from-scratch YOLOv8n a held-out mAP50 around 0.9 in a few minutes.
DEFAULT_N_IMAGES = 320
DEFAULT_IMAGE_SIZE = 320
DEFAULT_EPOCHS = 6
DEFAULT_BATCH = 8
VAL_FRACTION = 0.15
#: The stand-ins' schedule: one warmup epoch, an optimizer step every batch (ultralytics' ``nbs``
#: = the batch; its default accumulates gradients over 64 images: eight times fewer steps at
#: batch 8) and AdamW at ``ZOO_LR0`` unless the candidate's ``zoo_train`` names its own ``lr0``,
#: so a from-scratch detector finds objects in a few epochs (yolov8n: held-out mAP50 0.95 after
#: 8 epochs, against 0.85 after 15 with ultralytics' defaults). Recorded in the manifest
#: (``train.schedule``, ``train.lr0``): a change rebuilds the stand-ins, with the reason logged.
ZOO_WARMUP_EPOCHS = 1
ZOO_LR0 = 0.002
#: Classifier stand-ins: crop size of the benchmark crops and the AdamW learning rate.
CLASSIFIER_CROP_SIZE = 128
CLASSIFIER_LR = 2e-3
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ZooError(ModelError):
    """The zoo lacks a model, or a candidate cannot be built into it."""


def default_zoo_dir() -> Path:
    return preflight_home() / "zoo"


@dataclass
class Manifest:
    """``<zoo>/manifest.json``: ``models[name]`` is one stand-in's record."""

    zoo_dir: Path
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_build: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.zoo_dir / MANIFEST_NAME

    @classmethod
    def load(cls, zoo_dir: str | Path) -> Manifest:
        zoo_dir = Path(zoo_dir)
        path = zoo_dir / MANIFEST_NAME
        if not path.is_file():
            return cls(zoo_dir=zoo_dir)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ZooError(f"{path}: unreadable zoo manifest ({exc}); rebuild with "
                           "`preflight zoo build --force`") from exc
        return cls(zoo_dir=zoo_dir, models=dict(raw.get("models") or {}),
                   last_build=dict(raw.get("last_build") or {}))

    def save(self) -> None:
        self.zoo_dir.mkdir(parents=True, exist_ok=True)
        doc = {"format_version": FORMAT_VERSION, "updated_at": _now(), "models": self.models,
               "last_build": self.last_build}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
        os.replace(tmp, self.path)

    def update(self, name: str | None = None, entry: dict[str, Any] | None = None, *,
               last_build: dict[str, Any] | None = None) -> None:
        """Record ``entry`` as ``models[name]`` (and/or ``last_build``) in the file, under the zoo
        lock: the file is read again first, so entries other processes wrote since this manifest
        was loaded are kept; this object then holds the file's new content."""
        with zoo_lock(self.zoo_dir):
            fresh = Manifest.load(self.zoo_dir)
            if name is not None:
                fresh.models[name] = entry or {}
            if last_build is not None:
                fresh.last_build = last_build
            fresh.save()
        self.models, self.last_build = fresh.models, fresh.last_build

    def checkpoint_path(self, name: str) -> Path:
        entry = self.models.get(name)
        if entry is None:
            raise ZooError(f"model {name!r} is not in the zoo at {self.zoo_dir} "
                           f"(has: {sorted(self.models)}); build it with `preflight zoo build`")
        return self.zoo_dir / entry["checkpoint"]

    def verify(self, name: str) -> Path:
        """The checkpoint of ``name`` after checking its sha256 against the manifest."""
        path = self.checkpoint_path(name)
        if not path.is_file():
            raise ZooError(f"zoo checkpoint {path} is missing; rebuild with `preflight zoo build`")
        expected = self.models[name]["sha256"]
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"zoo checkpoint {path} has sha256 {actual} but the manifest records {expected}: "
                "the file was modified or corrupted since it was built. Refusing to load it; "
                "rebuild with `preflight zoo build --force`.")
        return path


def zoo_lock(zoo_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on the zoo folder (``<zoo>/.lock``), for the steps several build
    processes share: generating the benchmark data, preparing a view, updating the manifest."""
    return file_lock(Path(zoo_dir) / LOCK_NAME)


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a candidate's weights are: ``source`` is ``zoo`` | ``local`` | ``hub``."""

    path: str
    source: str
    sha256: str | None


def resolve_weights(candidate: Candidate, zoo_dir: str | Path | None = None) -> ResolvedWeights:
    """Find (and checksum) a candidate's weights. Zoo weights must match the manifest; local
    weights must match the candidate's ``sha256`` when it gives one; a bare name that is not a
    local file (e.g. ``yolov8n.pt``) is handed to ultralytics, which downloads it if it can."""
    if candidate.is_zoo:
        manifest = Manifest.load(zoo_dir or default_zoo_dir())
        path = manifest.verify(candidate.zoo_name or candidate.name)
        return ResolvedWeights(str(path), "zoo", manifest.models[candidate.zoo_name]["sha256"])
    local = candidate.resolve_path(candidate.weights)
    if local is None and ("/" in candidate.weights or os.sep in candidate.weights):
        raise ModelError(f"candidate {candidate.name!r}: weights file {candidate.weights!r} not "
                         f"found (looked relative to {candidate.source_dir} and {Path.cwd()})")
    if local is None:
        log.warning("candidate %r: %r is not a local file; ultralytics will try to download it",
                    candidate.name, candidate.weights)
        return ResolvedWeights(candidate.weights, "hub", candidate.sha256)
    digest = sha256_file(local)
    if candidate.sha256 and digest != candidate.sha256:
        raise ChecksumError(f"weights {local} of candidate {candidate.name!r} have sha256 {digest} "
                            f"but the candidates file expects {candidate.sha256}")
    return ResolvedWeights(str(local), "local", digest)


# ---------------------------------------------------------------------------------------------
# building


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _data_names(data_dir: Path) -> list[str]:
    doc = yaml.safe_load((data_dir / "data.yaml").read_text(encoding="utf-8")) or {}
    names = doc.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ZooError(f"{data_dir / 'data.yaml'} has no 'names'")


def _pairs(data_dir: Path) -> list[tuple[Path, Path]]:
    images = data_dir / "images"
    if not images.is_dir():
        raise ZooError(f"{data_dir} has no images/ folder (expected a YOLO dataset)")
    out = []
    for img in sorted(p for p in images.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
        out.append((img, data_dir / "labels" / img.relative_to(images).with_suffix(".txt")))
    if len(out) < 2:
        raise ZooError(f"{data_dir} has {len(out)} image(s); the zoo needs at least 2")
    return out


def _fingerprint(pairs: list[tuple[Path, Path]], root: Path) -> str:
    digest = hashlib.sha256()
    for img, lbl in pairs:
        digest.update(f"{img.relative_to(root)}:{img.stat().st_size}\n".encode())
        if lbl.is_file():
            digest.update(lbl.read_bytes())
    return digest.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare_view(data_dir: Path, model_classes: list[str], class_map: dict[str, str],
                 views_dir: Path, *, seed: int, val_fraction: float = VAL_FRACTION) -> Path:
    """A train/val YOLO dataset whose class ids are the model's label space: boxes of classes
    outside it are dropped, and a seeded ``val_fraction`` of the images is held out for val."""
    data_names = _data_names(data_dir)
    inverse: dict[str, int] = {}
    for model_id, model_name in enumerate(model_classes):
        op = class_map[model_name]
        if op in inverse:
            raise ZooError(f"class_map maps two model classes to {op!r}; a zoo stand-in needs a "
                           "one-to-one class_map")
        inverse[op] = model_id
    remap = {i: inverse[name] for i, name in enumerate(data_names) if name in inverse}
    pairs = _pairs(data_dir)
    key = hashlib.sha256(json.dumps([_fingerprint(pairs, data_dir), model_classes, class_map,
                                     seed, val_fraction]).encode()).hexdigest()[:12]
    view = views_dir / key
    if (view / "data.yaml").is_file():
        return view
    tmp = views_dir / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    val_idx = set(order[:n_val])
    for i, (img, lbl) in enumerate(pairs):
        split = "val" if i in val_idx else "train"
        rel = img.relative_to(data_dir / "images")
        _link_or_copy(img, tmp / "images" / split / rel)
        lines = []
        if lbl.is_file():
            for line in lbl.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if parts and int(float(parts[0])) in remap:
                    lines.append(" ".join([str(remap[int(float(parts[0]))]), *parts[1:]]))
        out = tmp / "labels" / split / rel.with_suffix(".txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    names = {i: n for i, n in enumerate(model_classes)}
    (tmp / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(view.resolve()), "train": "images/train", "val": "images/val",
         "names": names}, sort_keys=False), encoding="utf-8")
    shutil.rmtree(view, ignore_errors=True)
    os.replace(tmp, view)
    return view


def _versions() -> dict[str, str]:
    import torch
    import ultralytics

    return {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def benchmark_data(zoo_dir: str | Path, n_images: int, image_size: int, seed: int,
                   progress: bool = False) -> tuple[Path, dict[str, Any]]:
    """The clean benchmark images the stand-ins train on (generated once, under the zoo lock,
    into ``<zoo>/data``) and their description for the manifest."""
    with zoo_lock(zoo_dir):
        return _benchmark_data(Path(zoo_dir), n_images, image_size, seed, progress)


def _benchmark_data(zoo_dir: Path, n_images: int, image_size: int, seed: int,
                    progress: bool) -> tuple[Path, dict[str, Any]]:
    data_dir = zoo_dir / "data" / f"benchmark-n{n_images}-px{image_size}-seed{seed}"
    info = {"source": "synth", "profile": "benchmark", "n": n_images, "image_size": image_size,
            "seed": seed}
    if not (data_dir / "data.yaml").is_file():
        try:
            from preflight.synth.generate import generate
        except ImportError as exc:
            raise ZooError("the synthetic generator (preflight.synth.generate) is not available; "
                           "pass data_dir= a YOLO benchmark dataset") from exc
        shutil.rmtree(data_dir, ignore_errors=True)
        log.info("generating %d clean benchmark images in %s", n_images, data_dir)
        summary = generate(data_dir, profile="benchmark", n=n_images, seed=seed,
                           image_size=image_size, progress=progress)
        info["seconds"] = round(float(summary.seconds), 2)
    return data_dir, info


@dataclass(frozen=True)
class ZooBuild:
    """How :func:`build_zoo` makes the stand-ins: the clean benchmark sample they train on
    (``n_images`` frames at ``image_size`` px from ``seed``) and the schedule (``epochs`` of
    ``batch``; a candidate's ``zoo_train`` overrides them), on ``device`` (None: CUDA when
    present, else the CPU), with a progress bar or not."""

    n_images: int = DEFAULT_N_IMAGES
    image_size: int = DEFAULT_IMAGE_SIZE
    epochs: int = DEFAULT_EPOCHS
    batch: int = DEFAULT_BATCH
    seed: int = 0
    device: str | None = None
    progress: bool = True

    @classmethod
    def of(cls, settings: Any, **overrides: Any) -> ZooBuild:
        """From the settings' ``zoo`` (anything with ``n_images``, ``image_size``, ``epochs``,
        ``batch`` and ``seed``), with ``overrides`` (those given as None keep the setting)."""
        values = {k: getattr(settings, k) for k in ("n_images", "image_size", "epochs", "batch",
                                                    "seed")}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class _Build:
    """One :func:`build_zoo` call: where the stand-ins go, the data they train on, the manifest
    they are recorded in, how they are trained, and why each one is rebuilt."""

    zoo_dir: Path
    data_path: Path
    data_info: dict[str, Any]
    manifest: Manifest
    how: ZooBuild
    device: str
    force: bool
    report: Callable[[str], None] | None
    reasons: dict[str, str] = field(default_factory=dict)


def build_zoo(zoo_dir: str | Path | None, candidates: list[Candidate],
              build: ZooBuild | None = None, *, data_dir: str | Path | None = None,
              force: bool = False, only: list[str] | None = None,
              report: Callable[[str], None] | None = None) -> Manifest:
    """Train every ``zoo:`` candidate (or those named in ``only``) and record it in the manifest.

    ``build``: the sample and schedule (:class:`ZooBuild`; default: its defaults).
    ``data_dir``: a YOLO benchmark dataset to train on; None generates the synthetic benchmark
    profile (``build.n_images`` at ``build.image_size``, ``build.seed``) under ``<zoo>/data``.
    ``force``: retrain even when the stored stand-in is up to date.
    ``report``: also given each rebuild's reason and the training's progress lines (a Dagster
    run log); the reasons are kept in ``manifest.last_build["reasons"]``.
    """
    from preflight.models.ultralytics_env import import_ultralytics, resolve_device

    how = build or ZooBuild()
    t_start = time.perf_counter()
    zoo_dir = Path(zoo_dir or default_zoo_dir()).resolve()
    zoo_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in candidates if c.is_zoo and (not only or c.name in only)]
    if not todo:
        raise ZooError("no zoo candidates to build (weights: zoo:<name>)")
    if any(c.family != "timm" for c in todo):
        import_ultralytics()
    data_path, data_info = _training_data(zoo_dir, data_dir, how)
    run = _Build(zoo_dir, data_path, data_info, Manifest.load(zoo_dir), how,
                 resolve_device(how.device), force, report)
    built, cached = [], []
    for cand in todo:
        build_one = _build_classifier if cand.family == "timm" else _build_detector
        (built if build_one(cand, run) else cached).append(cand.zoo_name or cand.name)
    run.manifest.update(last_build={"finished_at": _now(),
                                    "seconds": round(time.perf_counter() - t_start, 1),
                                    "built": built, "cached": cached, "device": run.device,
                                    "reasons": run.reasons})
    return run.manifest


def _training_data(zoo_dir: Path, data_dir: str | Path | None, how: ZooBuild
                   ) -> tuple[Path, dict[str, Any]]:
    """The folder the stand-ins train on (``data_dir``, else the generated benchmark sample)
    and its description for the manifest, with the fingerprint of its files."""
    if data_dir is None:
        data_path, data_info = benchmark_data(zoo_dir, how.n_images, how.image_size, how.seed,
                                              how.progress)
    else:
        data_path = Path(data_dir).resolve()
        if not (data_path / "data.yaml").is_file():
            raise ZooError(f"{data_path} is not a YOLO dataset (no data.yaml)")
        data_info = {"source": "dir", "path": str(data_path)}
    data_info["fingerprint"] = _fingerprint(_pairs(data_path), data_path)
    return data_path, data_info


def _build_detector(cand: Candidate, run: _Build) -> bool:
    """Train an ultralytics candidate from scratch on the benchmark images and record it in the
    manifest; False when the stored stand-in is up to date (cached)."""
    from preflight.models.training import DetectorTraining, train_detector

    how, zoo_name = run.how, cand.zoo_name or cand.name
    batch = int(cand.zoo_train.get("batch", how.batch))
    train_cfg = {"epochs": int(cand.zoo_train.get("epochs", how.epochs)),
                 "imgsz": int(how.image_size), "batch": batch, "seed": int(how.seed),
                 "lr0": cand.zoo_train.get("lr0", ZOO_LR0), "val_fraction": VAL_FRACTION,
                 "schedule": {"nbs": batch, "warmup_epochs": ZOO_WARMUP_EPOCHS}}
    arch = cand.resolve_arch()
    config = {"arch": cand.arch, "arch_sha256": sha256_file(arch) if Path(arch).is_file()
              else None, "model_classes": cand.model_classes,
              "class_map": cand.class_map, "train": train_cfg,
              "data_fingerprint": run.data_info["fingerprint"]}
    ckpt = run.zoo_dir / f"{zoo_name}.pt"
    if _up_to_date(run.manifest, zoo_name, config, ckpt, run.force, run.report, run.reasons):
        return False
    with zoo_lock(run.zoo_dir):
        view = prepare_view(run.data_path, cand.model_classes, cand.class_map,
                            run.zoo_dir / "data" / "views", seed=how.seed)
    run_dir = _run_dir(run.zoo_dir, zoo_name, config, run.force)
    log.info("zoo: training %s (%s) for %d epochs at %d px on %s", zoo_name, cand.arch,
             train_cfg["epochs"], how.image_size, run.device)
    settings = DetectorTraining(epochs=train_cfg["epochs"], imgsz=how.image_size, batch=batch,
                                seed=how.seed, device=run.device, resume=True,
                                lr0=train_cfg["lr0"], progress=how.progress,
                                schedule=train_cfg["schedule"])
    result = train_detector(arch, view / "data.yaml", run_dir, settings, report=run.report)
    installed = _install(result.checkpoint, ckpt)
    args = result.train_args
    run.manifest.update(zoo_name, {
        **installed, "candidate": cand.name, "family": cand.family, "arch": cand.arch,
        "model_classes": cand.model_classes, "config": config,
        "train": {**train_cfg, "optimizer": args.get("optimizer"), "lr0_used": args.get("lr0"),
                  "device": run.device, "deterministic": True, "amp": bool(args.get("amp")),
                  "workers": args.get("workers")},
        "data": {**run.data_info, "view": str(view),
                 "train_images": _count(view / "images/train"),
                 "val_images": _count(view / "images/val")},
        "versions": _versions(), **_outcome(result, run.reasons.get(zoo_name)),
    })
    log.info("zoo: %s done in %.0f s, held-out mAP50 %.3f", zoo_name, result.seconds,
             result.metrics.get("map50", float("nan")))
    return True


def _install(checkpoint: str | Path, ckpt: Path) -> dict[str, Any]:
    """Copy a training's checkpoint to the zoo's file atomically (never half a file); its
    manifest fields (file name, sha256, size)."""
    tmp = ckpt.with_suffix(".pt.tmp")
    shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, ckpt)
    return {"checkpoint": ckpt.name, "sha256": sha256_file(ckpt), "size_bytes": ckpt.stat().st_size}


def _outcome(result: TrainResult, because: str | None) -> dict[str, Any]:
    """A stand-in's training outcome, the last fields of its manifest row."""
    return {"seconds": round(result.seconds, 1), "final_train_loss": result.final_train_loss,
            "heldout_val": result.metrics, "built_at": _now(), "built_because": because}


@dataclass(frozen=True)
class StandIn:
    """A candidate's weights as the zoo step left them: its stand-in built now or found cached
    (with why it was rebuilt, its training time and held-out metrics), or its own checkpoint /
    hub name checked."""

    weights: ResolvedWeights
    is_zoo: bool = False
    built: bool = False
    reason: str | None = None
    train_seconds: float = 0.0
    held_out: dict[str, float] = field(default_factory=dict)


def candidate_weights(cand: Candidate, zoo_dir: str | Path, build: Any,
                      device: str | None = None,
                      report: Callable[[str], None] | None = None) -> StandIn:
    """``cand``'s weights: for ``zoo:`` weights its stand-in, built with the settings ``build``
    (anything with ``n_images``, ``image_size``, ``epochs``, ``seed`` and ``batch``, e.g. the
    settings' ``zoo``) unless the cached one matches them; else its own checkpoint / hub name."""
    if not cand.is_zoo:
        return StandIn(resolve_weights(cand, Manifest.load(zoo_dir).zoo_dir))
    manifest = build_zoo(zoo_dir, [cand], ZooBuild.of(build, device=device, progress=False),
                         report=report)
    entry = manifest.models.get(cand.zoo_name or cand.name, {})
    last = manifest.last_build or {}
    return StandIn(resolve_weights(cand, zoo_dir), is_zoo=True,
                   built=cand.zoo_name in last.get("built", []),
                   reason=last.get("reasons", {}).get(cand.zoo_name),
                   train_seconds=float(entry.get("seconds") or 0.0),
                   held_out={k: float(v) for k, v in (entry.get("heldout_val") or {}).items()
                             if isinstance(v, int | float)})


def _run_dir(zoo_dir: Path, zoo_name: str, config: dict, force: bool) -> Path:
    """The training folder of a stand-in: kept (so an interrupted build resumes) while its
    settings are unchanged, emptied when they changed or ``force`` is set."""
    run_dir = zoo_dir / "runs" / zoo_name
    marker = run_dir / "zoo_config.json"
    if force or not marker.is_file() or json.loads(marker.read_text("utf-8")) != config:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        marker.write_text(json.dumps(config, sort_keys=True), "utf-8")
    return run_dir


def rebuild_reason(manifest: Manifest, zoo_name: str, config: dict, ckpt: Path,
                   force: bool = False) -> str | None:
    """Why the stand-in ``zoo_name`` must be (re)trained, in a sentence; None when the manifest
    entry was built with ``config`` and its checkpoint still has its sha256 (cached)."""
    if force:
        return "a rebuild was forced (--force)"
    entry = manifest.models.get(zoo_name)
    if not entry:
        return f"it is not in the manifest yet ({manifest.path}): first build"
    if not ckpt.is_file():
        return f"its checkpoint {ckpt} is missing"
    if sha256_file(ckpt) != entry.get("sha256"):
        return (f"its checkpoint {ckpt} no longer has the sha256 the manifest records "
                f"({str(entry.get('sha256'))[:12]}...): modified or replaced")
    changes = _config_changes(entry.get("config") or {}, config)
    if changes:
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more"
                                          if len(changes) > 6 else "")
        return f"its settings changed since it was built: {shown}"
    return None


def _config_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (added / removed included)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: (not set) -> {_short(new[key])}")
            elif key not in new:
                out.append(f"{sub}: {_short(old[key])} -> (not set)")
            else:
                out.extend(_config_changes(old[key], new[key], sub))
        return out
    return [] if old == new else [f"{path or 'config'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _up_to_date(manifest: Manifest, zoo_name: str, config: dict, ckpt: Path, force: bool,
                report: Callable[[str], None] | None, reasons: dict[str, str]) -> bool:
    """Whether the stored stand-in can be used as is; when not, the reason is logged (and given
    to ``report``, e.g. a Dagster run log) before the training starts, and kept in ``reasons``."""
    why = rebuild_reason(manifest, zoo_name, config, ckpt, force)
    if why is None:
        log.info("zoo: %s is up to date (cached)", zoo_name)
        return True
    message = f"zoo: (re)building {zoo_name} because {why}"
    log.warning(message)
    if report is not None:
        report(message)
    reasons[zoo_name] = why
    return False


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# classifiers (family: timm)


def _classifier_versions() -> dict[str, str]:
    import timm
    import torch

    return {"timm": timm.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def benchmark_crops(zoo_dir: Path, data_path: Path, fingerprint: str,
                    size: int = CLASSIFIER_CROP_SIZE) -> Path:
    """Object crops of the benchmark data under ``<zoo>/data/crops`` (cached by fingerprint)."""
    from preflight.data.classification_sample import CROPS_SUMMARY, crops_from_detection_sample

    crops = zoo_dir / "data" / "crops" / f"{fingerprint[:12]}-px{size}"
    if not (crops / CROPS_SUMMARY).is_file():
        log.info("cutting benchmark crops of %s into %s", data_path, crops)
        crops_from_detection_sample(data_path, crops, size=size,
                                    taxonomy=SYNTH_TAXONOMY)
    return crops


def _build_classifier(cand: Candidate, run: _Build) -> bool:
    """Train a timm candidate from scratch on benchmark crops and record it in the manifest;
    False when the stored stand-in is up to date (cached)."""
    from preflight.data.classification_sample import read_classification_sample
    from preflight.models.timm_training import ClassifierTraining, train_classifier

    how, zoo_name = run.how, cand.zoo_name or cand.name
    inverse = {op: m for m, op in cand.class_map.items()}
    if len(inverse) != len(cand.class_map):
        raise ZooError(f"candidate {cand.name!r}: class_map maps two model classes to one "
                       "operational class; a zoo stand-in needs a one-to-one class_map")
    train_cfg = {"epochs": int(cand.zoo_train.get("epochs", how.epochs)),
                 "input_size": int(cand.input_size),
                 "batch": int(cand.zoo_train.get("batch", how.batch)), "seed": int(how.seed),
                 "lr0": cand.zoo_train.get("lr0"), "val_fraction": VAL_FRACTION,
                 "crop_size": CLASSIFIER_CROP_SIZE, "freeze": "none"}
    config = {"arch": cand.arch, "family": cand.family, "model_classes": cand.model_classes,
              "class_map": cand.class_map, "train": train_cfg,
              "data_fingerprint": run.data_info["fingerprint"]}
    ckpt = run.zoo_dir / f"{zoo_name}.pt"
    if _up_to_date(run.manifest, zoo_name, config, ckpt, run.force, run.report,
                   run.reasons):
        return False
    with zoo_lock(run.zoo_dir):
        crops = benchmark_crops(run.zoo_dir, run.data_path, run.data_info["fingerprint"])
    images, quarantine = read_classification_sample(crops, SYNTH_TAXONOMY, seed=how.seed)
    run_dir = _run_dir(run.zoo_dir, zoo_name, config, run.force)
    lr = float(train_cfg["lr0"] or CLASSIFIER_LR)
    log.info("zoo: training %s (timm %s, from scratch) for %d epochs at %d px on %d crops, %s",
             zoo_name, cand.arch, train_cfg["epochs"], cand.input_size, len(images), run.device)
    settings = ClassifierTraining(classes=cand.model_classes, label_map=inverse,
                                  val_fraction=VAL_FRACTION, epochs=train_cfg["epochs"],
                                  batch=train_cfg["batch"], lr=lr, freeze="none",
                                  input_size=cand.input_size, seed=how.seed,
                                  device=run.device, resume=True, progress=how.progress)
    result = train_classifier(cand.arch, images, run_dir, settings, taxonomy=SYNTH_TAXONOMY)
    installed = _install(result.checkpoint, ckpt)
    args = result.train_args
    run.manifest.update(zoo_name, {
        **installed, "candidate": cand.name, "family": cand.family, "task": "classify", "arch": cand.arch,
        "model_classes": cand.model_classes, "config": config,
        "train": {**train_cfg, "optimizer": "AdamW", "lr0_used": lr, "device": run.device,
                  "pretrained": False, "amp": False},
        "data": {**run.data_info, "crops": str(crops), "crops_total": int(len(images)),
                 "crops_quarantined": int(len(quarantine)),
                 "train_images": args.get("train_samples"), "val_images": args.get("val_samples"),
                 "dropped_outside_label_space": args.get("dropped_samples")},
        "versions": _classifier_versions(), **_outcome(result, run.reasons.get(zoo_name)),
    })
    log.info("zoo: %s done in %.0f s, held-out accuracy %.3f", zoo_name, result.seconds,
             result.metrics.get("accuracy", float("nan")))
    return True
