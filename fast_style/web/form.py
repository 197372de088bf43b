"""Read a ``multipart/form-data`` request body into memory as it arrives, within a size limit.

The body is parsed chunk by chunk, so an upload is held once (as its parts), never as a whole body
and then again as parts; it never becomes a temporary file, and nothing of it outlives the request.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["Form", "FormError", "read_form"]

MAX_PARTS = 16


class FormError(Exception):
    """A request body that cannot be read as the form; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Form:
    """Form fields by name: ``values`` holds the bytes, ``filenames`` the file name of file fields."""

    values: dict[str, bytes] = field(default_factory=dict)
    filenames: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        """A field as text (``None`` when absent); an error if it is not UTF-8."""
        raw = self.values.get(name)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise FormError(f"form field {name!r} is not UTF-8 text") from None


class _PartCollector:
    """Callbacks for ``MultipartParser`` that gather each part's headers and bytes into a ``Form``."""

    def __init__(self) -> None:
        self.form = Form()
        self.headers: dict[bytes, bytes] = {}
        self.header = bytearray()
        self.value = bytearray()
        # A part's bytes go straight into a BytesIO: getvalue() at the end hands over its buffer
        # without copying it (CPython), where bytes(bytearray) would hold the part twice.
        self.data = io.BytesIO()
        self.complete = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_part_data": lambda data, start, end: self.data.write(memoryview(data)[start:end]),
            "on_part_end": self.on_part_end,
            "on_end": lambda: setattr(self, "complete", True),
        }

    def on_part_begin(self) -> None:
        if len(self.form.values) >= MAX_PARTS:
            raise FormError(f"too many form fields (at most {MAX_PARTS})")
        self.headers, self.data = {}, io.BytesIO()

    def on_header_end(self) -> None:
        self.headers[bytes(self.header).lower()] = bytes(self.value)
        self.header, self.value = bytearray(), bytearray()

    def on_part_end(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or not name:
            raise FormError("a form part has no name")
        key = name.decode("utf-8", "replace")
        if key in self.form.values:
            raise FormError(f"form field {key!r} is given twice")
        self.form.values[key] = self.data.getvalue()
        if b"filename" in options:
            self.form.filenames[key] = options[b"filename"].decode("utf-8", "replace")
        self.data = io.BytesIO()


async def read_form(chunks: AsyncIterator[bytes], content_type: str, limit: int) -> Form:
    """Parse a ``multipart/form-data`` body as its chunks arrive.

    A 400 ``FormError`` for another content type (before any of the body is read) or a broken
    body; a 413 as soon as the body passes ``limit`` bytes.
    """
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError("send the request as multipart/form-data (fields: image, model, strength, ...)")
    collector = _PartCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise FormError(f"the request is larger than the {limit / 2**20:.0f} MB limit", status=413)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise FormError("the multipart/form-data body is malformed") from None
    if not collector.complete:
        raise FormError("the multipart/form-data body ends before its closing boundary")
    return collector.form
