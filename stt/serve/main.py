"""``stt serve``: load the models once (the offline model and decoder; one causal model and one
shared beam decoder behind every live stream), then run the HTTP server (uvicorn) and, if asked,
the Wyoming server in one event loop, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stt.errors import ConfigError
from stt.serve.config import ServeConfig, is_loopback
from stt.serve.engine import MODEL_ID, Engine, EngineInfo
from stt.serve.stream_process import StreamProcess, stream_factory
from stt.streaming import StreamingTranscriber, default_streaming_model_path
from stt.transcribe import default_model_path, load_model

log = logging.getLogger("stt.serve")


def load_engine(config: ServeConfig) -> Engine:
    """The :class:`Engine` for ``stt serve``: ``config.model`` (None: the shipped default) and
    ``config.streaming_model`` (None: the shipped causal model, if there is one; ``"none"``: no
    live streaming).

    Raises:
        ConfigError: no model, or one that cannot be used (a streaming model that is not causal).
        CheckpointError: a checkpoint is missing or unreadable.
    """
    model_path = Path(config.model) if config.model else default_model_path()
    factory, remote, stream_path = None, None, None
    wanted = config.streaming_model
    if wanted != "none":
        stream_path = Path(wanted) if wanted else default_streaming_model_path()
        if not (wanted or stream_path.is_file()):
            stream_path = None
        elif config.stream_process:  # it loads its model while this process loads the other
            remote = StreamProcess(
                stream_path, config.stream_workers, wait=False, threads=config.stream_threads
            )
        else:
            factory = stream_factory(stream_path, config.stream_workers)
    try:
        # Decode in the file threads themselves: a pool of beam-search processes would fight
        # the threads for the same cores.
        transcriber = load_model(model_path, device=config.device, decoder_workers=1)
        if remote is not None:
            remote.wait_ready()
    except BaseException:
        if remote is not None:
            remote.close()
        raise
    info = EngineInfo(
        model_id=MODEL_ID,
        model_path=str(model_path),
        decoder=transcriber.decoder_config.kind,
        streaming_model_path=None if stream_path is None else str(stream_path),
    )
    return Engine(transcriber, factory, info, workers=config.workers, queue=config.queue,
                  stream_workers=config.stream_workers,
                  accept_together=StreamingTranscriber.accept_together,
                  remote_streams=remote, stream_threads=config.stream_threads)  # fmt: skip


def warn_if_exposed(config: ServeConfig) -> None:
    """A server other machines can reach without a key is said to be open, on stderr. Wyoming
    has no authentication at all, so an exposed Wyoming port is always said to be open."""
    if not is_loopback(config.host) and not config.api_key:
        print(
            f"stt: warning: listening on {config.host} with no --api-key: anyone who can "
            "reach this machine can use the server",
            file=sys.stderr,
        )
    host = urlparse(config.wyoming).hostname if config.wyoming else None
    if host is not None and not is_loopback(host):
        print(
            f"stt: warning: Wyoming on {config.wyoming} has no authentication (--api-key "
            "covers HTTP only): keep it on a trusted network",
            file=sys.stderr,
        )


def listen(host: str, port: int, what: str = "--host/--port") -> socket.socket:
    """A listening TCP socket, bound before the models load (seconds), so a port in use is one
    line at once rather than a failure after loading.

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's, no permission).
    """
    try:
        return socket.create_server((host, port), reuse_port=False, backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({what}): "
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        ) from None


def check_wyoming_address(uri: str) -> None:
    """Fail early, like :func:`listen`, if a tcp:// Wyoming address cannot be bound."""
    parsed = urlparse(uri)
    if parsed.scheme == "tcp":
        listen(parsed.hostname or "", parsed.port or 0, "--wyoming").close()


def uvicorn_config(app: Any, config: ServeConfig, **settings: Any) -> Any:
    """uvicorn's settings for ``app`` (``settings``: more of them, e.g. ``host`` and ``port``).

    No permessage-deflate on WebSockets: PCM audio barely compresses, and inflating every 100 ms
    frame (and the client deflating it) is CPU that live streams need."""
    import uvicorn

    return uvicorn.Config(
        app, log_level=config.log_level, ws_max_size=1 << 20, ws_per_message_deflate=False,
        lifespan="off", **settings,
    )  # fmt: skip


async def serve_forever(engine: Engine, config: ServeConfig, sock: socket.socket) -> None:
    """Run until stopped on ``sock``; the Wyoming server, if any, beside the HTTP one."""
    import uvicorn

    from stt.serve.http import create_app

    server = uvicorn.Server(uvicorn_config(create_app(engine, config), config))
    tasks = [asyncio.create_task(server.serve(sockets=[sock]), name="http")]
    if config.wyoming:
        from stt.serve.wyoming import serve_wyoming

        tasks.append(asyncio.create_task(serve_wyoming(engine, config.wyoming), name="wyoming"))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:  # the HTTP server stopped (Ctrl-C): stop Wyoming with it
        task.cancel()
    for task in done:
        try:
            task.result()
        except OSError as exc:  # Wyoming's address was taken between the check and now
            raise ConfigError(f"cannot serve {task.get_name()}: {exc.strerror or exc}") from None


def require_extra(config: ServeConfig) -> None:
    """Say in one line which package of the ``[serve]`` extra is missing, before any work.

    Raises:
        ConfigError: fastapi, uvicorn, python-multipart (or wyoming, if asked for) is missing.
    """
    import importlib.util

    needed = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}
    if config.wyoming:
        needed["wyoming"] = "wyoming"
    missing = [pip for module, pip in needed.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            f"stt serve needs the serve extra ({', '.join(missing)} missing): "
            "pip install 'wavenet-stt[serve]'"
        )


def run(config: ServeConfig) -> int:
    """Check, bind, load, warn, serve; returns the exit status."""
    require_extra(config)
    sock = listen(config.host, config.port)
    if config.wyoming:
        check_wyoming_address(config.wyoming)
    warn_if_exposed(config)
    engine = load_engine(config)
    streaming = engine.info.streaming_model_path or "none (no --streaming-model)"
    print(f"stt: serving {engine.info.model_path} ({engine.info.decoder}); live streams: "
          f"{streaming}", file=sys.stderr)  # fmt: skip
    print(f"stt: http://{config.host}:{config.port}/  (OpenAI base_url: "
          f"http://{config.host}:{config.port}/v1)", file=sys.stderr)  # fmt: skip
    if config.wyoming:
        print(f"stt: Wyoming (Home Assistant): {config.wyoming}", file=sys.stderr)
    try:
        asyncio.run(serve_forever(engine, config, sock))
    finally:
        engine.close()
        sock.close()
    return 0
