"""Read a ``multipart/form-data`` request body into memory, within a size limit.

The body is parsed from bytes already held in memory, so an upload never becomes a temporary
file, and nothing of it outlives the request that sent it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["Form", "FormError", "parse_form", "read_body"]

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


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Collect a request body, stopping with a 413 ``FormError`` as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise FormError(f"the request is larger than the {limit / 2**20:.0f} MB limit", status=413)
    return bytes(body)


class _PartCollector:
    """Callbacks for ``MultipartParser`` that gather each part's headers and bytes into a ``Form``."""

    def __init__(self) -> None:
        self.form = Form()
        self.headers: dict[bytes, bytes] = {}
        self.header = bytearray()
        self.value = bytearray()
        self.data = bytearray()
        self.complete = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_part_data": lambda data, start, end: self.data.extend(data[start:end]),
            "on_part_end": self.on_part_end,
            "on_end": lambda: setattr(self, "complete", True),
        }

    def on_part_begin(self) -> None:
        if len(self.form.values) >= MAX_PARTS:
            raise FormError(f"too many form fields (at most {MAX_PARTS})")
        self.headers, self.data = {}, bytearray()

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
        self.form.values[key] = bytes(self.data)
        if b"filename" in options:
            self.form.filenames[key] = options[b"filename"].decode("utf-8", "replace")
        self.data = bytearray()


def parse_form(content_type: str, body: bytes) -> Form:
    """Parse a ``multipart/form-data`` body; a 400 ``FormError`` for anything else or a broken body."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError("send the request as multipart/form-data (fields: image, model, strength, ...)")
    collector = _PartCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise FormError("the multipart/form-data body is malformed") from None
    if not collector.complete:
        raise FormError("the multipart/form-data body ends before its closing boundary")
    return collector.form
