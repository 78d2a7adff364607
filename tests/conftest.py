"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist (``make test-fast`` runs two workers) each worker gets its own project,
    Dagster and ultralytics home below the given one, so workers never share a SQLite store."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    base = Path(os.environ.get("PREFLIGHT_HOME") or Path.cwd() / ".preflight")
    home = (base / "xdist" / worker).resolve()
    for name, path in (("PREFLIGHT_HOME", home), ("DAGSTER_HOME", home / "dagster"),
                       ("YOLO_CONFIG_DIR", home / "ultralytics")):
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)


@contextlib.contextmanager
def no_network(home: str | None = None) -> Iterator[list[str]]:
    """Refuse every connection attempt (model downloads, online checks) and record it; the
    project home goes to ``home`` so zoo, ultralytics settings and fonts stay out of the repo."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted in an offline test")

    patch = pytest.MonkeyPatch()
    if home is not None:
        patch.setenv("PREFLIGHT_HOME", home)
    patch.setattr(socket, "getaddrinfo", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket.socket, "connect", refuse)
    try:
        yield attempts
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def offline_home(tmp_path_factory):
    """A fresh project home for the module, and a failure if anything reached for the network."""
    with no_network(str(tmp_path_factory.mktemp("home"))) as attempts:
        yield
    assert not attempts, f"network access attempted: {attempts}"


@contextlib.contextmanager
def project(home, config) -> Iterator:
    """A project home and settings file in the environment, an offline guard and a Dagster
    instance in the home: what the pipeline tests materialise into."""
    import dagster as dg

    patch = pytest.MonkeyPatch()
    patch.setenv("PREFLIGHT_HOME", str(home))
    patch.setenv("PREFLIGHT_CONFIG", str(config))
    patch.setenv("YOLO_CONFIG_DIR", str(home / "ultralytics"))
    patch.setenv("YOLO_OFFLINE", "1")
    patch.delenv("PREFLIGHT_CANDIDATES", raising=False)
    (home / "dagster").mkdir(exist_ok=True)
    try:
        with no_network() as attempts, \
                dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            yield instance
        assert not attempts, f"the pipeline reached for the network: {attempts}"
    finally:
        patch.undo()
