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
