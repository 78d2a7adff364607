"""The project-local Dagster home: `.preflight/dagster` with the repository's dagster.yaml."""

from __future__ import annotations

from pathlib import Path

from preflight import environment
from preflight.config import preflight_home

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "dagster.yaml"


def prepare_dagster_home() -> Path:
    """Point DAGSTER_HOME at the project-local home and install dagster.yaml there.

    The repository's `dagster.yaml` is the template; `${DAGSTER_HOME}` in it becomes the absolute
    home so SQLite storage never depends on the working directory. An existing DAGSTER_HOME (for
    example a deployment with Postgres storage) is respected and its dagster.yaml left alone.
    """
    home = environment.dagster_home(preflight_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    environment.use_dagster_home(home)
    target = home / "dagster.yaml"
    if not target.exists() or _is_ours(target):
        rendered = TEMPLATE.read_text(encoding="utf-8").replace("${DAGSTER_HOME}", str(home))
        if not target.exists() or target.read_text(encoding="utf-8") != rendered:
            target.write_text(rendered, encoding="utf-8")
    return home


def _is_ours(path: Path) -> bool:
    return path.read_text(encoding="utf-8").startswith("# Preflight's Dagster instance")
