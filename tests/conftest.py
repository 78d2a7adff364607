"""Shared test helpers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest


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
