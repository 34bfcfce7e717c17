"""Settings of ``stt serve`` (mirrors ``conf/serve.yaml``), checked before anything loads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlparse

from stt.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    """Settings of ``stt serve``; see ``conf/serve.yaml`` for what each one does."""

    host: str = "127.0.0.1"
    port: int = 8000
    allow_remote: bool = False  # a host other than loopback needs this said explicitly
    model: str | None = None  # None: the shipped default
    streaming_model: str | None = None  # None: the shipped causal model; "none": no streams
    device: str = "cpu"
    api_key: str | None = None
    max_upload_mb: float = 100.0
    workers: int = 2  # threads running whole-file transcriptions
    queue: int = 16  # requests that may wait for a worker before 503
    stream_workers: int = 2  # threads and beam-search processes for live utterances' finals
    stream_threads: int = 1  # torch threads of the one thread that runs live chunks as batches
    stream_process: bool = (
        False  # live streams in a process of their own (stt.serve.stream_process)
    )
    max_streams: int = 64  # open WebSocket streams before new ones are refused
    pause_seconds: float = 0.8  # a stream's utterance ends after this long with no new word
    max_utterance_seconds: float = 30.0  # ... or after this much audio
    idle_timeout_seconds: float = 30.0  # a stream that sends nothing for this long is closed
    wyoming: str | None = None  # tcp://HOST:PORT for Home Assistant; None: no Wyoming server
    log_level: str = "info"

    def __post_init__(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        require(0 <= self.port <= 65535, f"--port must be 0-65535, got {self.port}")
        require(
            self.max_upload_mb > 0, f"--max-upload-mb must be positive, got {self.max_upload_mb}"
        )
        require(self.workers >= 1, f"--workers must be at least 1, got {self.workers}")
        require(self.queue >= 0, f"queue must be >= 0, got {self.queue}")
        require(self.stream_workers >= 1, f"stream_workers must be >= 1, got {self.stream_workers}")
        require(self.stream_threads >= 1, f"stream_threads must be >= 1, got {self.stream_threads}")
        require(self.max_streams >= 1, f"max_streams must be >= 1, got {self.max_streams}")
        require(self.pause_seconds > 0, f"pause_seconds must be positive, got {self.pause_seconds}")
        require(
            self.max_utterance_seconds > self.pause_seconds,
            "max_utterance_seconds must be longer than pause_seconds",
        )
        require(self.idle_timeout_seconds > 0, "idle_timeout_seconds must be positive")
        require(self.api_key != "", "--api-key must not be empty")
        require(
            is_loopback(self.host) or self.allow_remote,
            f"--host {self.host} accepts connections from other machines: add --allow-remote "
            "to mean it (and set --api-key)",
        )
        if self.wyoming is not None:
            uri = urlparse(self.wyoming)
            require(
                uri.scheme in ("tcp", "unix") and (uri.scheme == "unix" or uri.port is not None),
                f"--wyoming must be tcp://HOST:PORT or unix://PATH, got {self.wyoming!r}",
            )
            if uri.scheme == "tcp":
                require(
                    is_loopback(uri.hostname or "") or self.allow_remote,
                    f"--wyoming {self.wyoming} accepts connections from other machines: add "
                    "--allow-remote to mean it",
                )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
