"""Import ultralytics the offline-safe way, and keep it from phoning home or logging elsewhere.

Every ultralytics import in Preflight goes through :func:`import_ultralytics`, which first sets
(unless the user already did):

- ``YOLO_CONFIG_DIR`` -> ``$PREFLIGHT_HOME/ultralytics`` (settings.json stays project-local);
- ``YOLO_OFFLINE=1`` (no analytics, no pip-update or online checks);
- ``YOLO_AUTOINSTALL=false`` (never ``pip install`` a missing export dependency behind our back).

Ultralytics' dataset check calls ``check_font("Arial.ttf")``, which does an HTTP HEAD to GitHub
when the font is not in its config dir. :func:`import_ultralytics` puts matplotlib's bundled
DejaVu Sans there under that name, so no request is made (plots are off anyway; the font is only
used for drawing labels).

:func:`integrations_off` turns off ultralytics' MLflow / ClearML / Comet / DVC / Ray Tune /
TensorBoard / W&B callbacks and analytics sync *in memory* for one call (nothing is written to
settings.json): with mlflow installed, ultralytics would otherwise log every training run to
``./mlruns`` on its own. Preflight logs to MLflow itself, in the pipeline layer.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from preflight.config import preflight_home

_INTEGRATION_KEYS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "sync")
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def set_ultralytics_env() -> None:
    """Set ultralytics' environment defaults (before it is imported; no-op for keys already set)."""
    from preflight.environment import library_default

    config_dir = library_default("YOLO_CONFIG_DIR", str(preflight_home() / "ultralytics"))
    library_default("YOLO_OFFLINE", "1")
    library_default("YOLO_AUTOINSTALL", "false")
    Path(config_dir).mkdir(parents=True, exist_ok=True)


def _seed_fonts(config_dir: Path) -> None:
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception:  # pragma: no cover - matplotlib is a dependency
        return
    if not source.is_file():  # pragma: no cover
        return
    for name in _FONTS:
        target = config_dir / name
        if not target.exists():
            with contextlib.suppress(OSError):
                config_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def import_ultralytics() -> ModuleType:
    """``import ultralytics`` with the offline defaults above applied first."""
    set_ultralytics_env()
    import ultralytics
    from ultralytics.utils import USER_CONFIG_DIR

    _seed_fonts(Path(USER_CONFIG_DIR))
    return ultralytics


@contextlib.contextmanager
def integrations_off() -> Iterator[None]:
    """Disable ultralytics' logger integrations and analytics for the duration (in memory only)."""
    import_ultralytics()
    from ultralytics.utils import SETTINGS

    saved = {k: SETTINGS.get(k) for k in _INTEGRATION_KEYS}
    for key in _INTEGRATION_KEYS:
        dict.__setitem__(SETTINGS, key, False)  # bypass JSONDict.__setitem__: do not persist
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                dict.pop(SETTINGS, key, None)
            else:
                dict.__setitem__(SETTINGS, key, value)


@contextlib.contextmanager
def ultralytics_logging(progress: bool) -> Iterator[None]:
    """Show ultralytics' INFO logs and progress bars only when ``progress`` (warnings always)."""
    import_ultralytics()
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    if not progress:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"`` -> ``"cuda:0"`` when CUDA is available, else ``"cpu"``; anything else is
    returned as given (``"cpu"``, ``"cuda:1"``, ``"0"``, ``"mps"``)."""
    if device not in (None, "", "auto"):
        return str(device)
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def ultralytics_device(device: str) -> str:
    """Torch-style device string -> the form ultralytics' ``device=`` accepts."""
    return device[len("cuda:"):] if device.startswith("cuda:") else device


def is_rtdetr_arch(arch: str) -> bool:
    """Whether a model YAML (name or path) builds an RT-DETR (RTDETRDecoder head)."""
    path = Path(arch)
    if path.is_file():
        try:
            return "RTDETRDecoder" in path.read_text(encoding="utf-8")
        except OSError:
            return False
    return "rtdetr" in path.name.lower()


def load_ultralytics_model(source: str | Path):
    """An ultralytics model from a checkpoint (.pt), a model YAML, or a hub name.

    RT-DETR YAMLs get the ``RTDETR`` class (its own trainer and loss); checkpoints are routed by
    ultralytics itself (an RT-DETR checkpoint loaded through ``YOLO`` becomes ``RTDETR``).
    """
    import_ultralytics()
    from ultralytics import RTDETR, YOLO

    source = str(source)
    if source.lower().endswith((".yaml", ".yml")) and is_rtdetr_arch(source):
        return RTDETR(source)
    return YOLO(source)
