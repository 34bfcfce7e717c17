"""Receiving a multipart upload safely: bounded in size, written only into a private folder.

Starlette's own form parsing spools large files into the system's shared temporary folder and
reads a body whole before a handler can look at it. Here the body is parsed as it arrives
(``python-multipart``'s streaming parser): the ``file`` part goes straight to ``upload`` in a
folder made for this request (mode 0700, removed by the caller), the client's file name is never
used as a path, the other fields are small strings, and the limit is enforced twice: on the
declared ``Content-Length`` before anything is read, and on the bytes actually received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FIELD_BYTES = 64 * 1024  # a prompt of hotwords, a format name: never more
MAX_FIELDS = 32
FORM_OVERHEAD = 1024 * 1024  # the fields and part headers beside the file


class UploadError(Exception):
    """An upload refused: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    """What a multipart body held: the ``file`` part's path (None if there was none), its
    size, and every other field's values (repeated names, e.g. ``timestamp_granularities[]``,
    keep every value)."""

    path: Path | None = None
    size: int = 0
    fields: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else default


def _too_big(limit: int) -> UploadError:
    return UploadError(
        413, f"upload too large: the limit is {limit / 2**20:.3g} MB (--max-upload-mb)"
    )


class _Receiver:
    """The parser's callbacks: which part is open, where its bytes go."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._file: BinaryIO | None = None
        self._value = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._name, self._value = {}, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self._file is not None or self.upload.path is not None:
                raise UploadError(400, "more than one 'file' field in the upload")
            self.upload.path = self.folder / "upload"  # never the client's file name
            self._file = self.upload.path.open("xb")
        elif sum(len(v) for v in self.upload.fields.values()) >= MAX_FIELDS:
            raise UploadError(400, f"too many form fields (the limit is {MAX_FIELDS})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise _too_big(self.limit)
            self._file.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise UploadError(400, f"form field {self._name!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            value = self._value.decode("utf-8", "replace")
            self.upload.fields.setdefault(self._name, []).append(value)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_upload(
    content_type: str,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    folder: Path,
    max_bytes: int,
) -> Upload:
    """Parse a ``multipart/form-data`` body from ``chunks`` into ``folder``.

    Raises:
        UploadError: 413 when the body is declared or found larger than ``max_bytes`` (plus
            room for the form fields); 400 for a body that is not multipart or is malformed;
            415 for another content type.
    """
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise UploadError(
            415 if kind else 400,
            "send the audio as multipart/form-data with a 'file' field "
            f"(got Content-Type {content_type or 'none'!r})",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, f"bad Content-Length {content_length!r}") from None
        if declared > max_bytes + FORM_OVERHEAD:
            raise _too_big(max_bytes)
    receiver = _Receiver(folder, max_bytes)
    callbacks = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
            "on_header_end", "on_headers_finished",
        )
    }  # fmt: skip
    parser = MultipartParser(boundary, callbacks, max_size=max_bytes + FORM_OVERHEAD)
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes + FORM_OVERHEAD:
                raise _too_big(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    finally:
        receiver.close()
    return receiver.upload
