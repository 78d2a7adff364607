"""Where Preflight keeps its tables, checkpoints and reports (a project-local folder by default)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from preflight.config import preflight_home


class PreflightStore(dg.ConfigurableResource):
    """A folder tree of Parquet tables and files; swap `home` for a mounted volume in deployment."""

    home: str | None = None  # None: $PREFLIGHT_HOME or ./.preflight

    @property
    def root(self) -> Path:
        root = Path(self.home).resolve() if self.home else preflight_home()
        root.mkdir(parents=True, exist_ok=True)
        return root

    def path(self, *parts: str) -> Path:
        """A path under the store; its parent folder exists."""
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write `table` as `<root>/tables/<name>.parquet` atomically and return the path."""
        target = self.path("tables", f"{name}.parquet")
        tmp = target.with_suffix(".parquet.tmp")
        table.to_parquet(tmp, index=False)
        tmp.replace(target)
        return target

    def read_table(self, name: str) -> pd.DataFrame:
        target = self.root / "tables" / f"{name}.parquet"
        if not target.exists():
            raise FileNotFoundError(
                f"table {name!r} not found at {target}: materialise the asset that writes it first")
        return pd.read_parquet(target)

    def table_path(self, name: str) -> Path:
        return self.root / "tables" / f"{name}.parquet"
