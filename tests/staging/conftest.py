"""Fixtures of the staging tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    """A threaded server: requests are answered concurrently, each in a thread of its own (the
    default httpserver fixture answers one by one)."""
    httpserver = HTTPServer(threaded=True)
    httpserver.start()
    yield httpserver
    httpserver.clear()
    if httpserver.is_running():
        httpserver.stop()


@pytest.fixture
def api(server: HTTPServer) -> Iterator[HTTPServer]:
    """The threaded server, cleared before and after the test."""
    server.clear()
    yield server
    server.clear()
