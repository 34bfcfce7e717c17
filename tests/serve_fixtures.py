"""A real ``stt serve`` for tests: uvicorn on a free loopback port, in a thread of this process,
with the shipped models loaded once per test session (a second ~2 s of loading per test would
add up). :func:`running_server` yields the base URL; the server stops when the block ends."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from functools import cache

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e .[serve]")

from stt.serve.config import ServeConfig  # noqa: E402
from stt.serve.engine import Engine
from stt.serve.main import load_engine, uvicorn_config  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@cache
def shipped_engine() -> Engine:
    """The shipped offline and streaming models, shared by every server a test starts."""
    return load_engine(ServeConfig())


@contextlib.contextmanager
def running_server(engine: Engine | None = None, **settings) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a server running ``engine`` (default: the shipped models)
    with ``ServeConfig(**settings)``."""
    import uvicorn

    from stt.serve.http import create_app

    config = ServeConfig(port=free_port(), **{"log_level": "warning", **settings})
    engine = engine or shipped_engine()
    app = create_app(engine, config)
    server = uvicorn.Server(uvicorn_config(app, config, host=config.host, port=config.port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
