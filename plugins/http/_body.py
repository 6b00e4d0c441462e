"""Reading a response body with a size limit, so that a huge or endless body raises
instead of filling memory."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ._url import redact_url

#: The default ``max_size=`` of the HTTP steps: 64 MiB of body. A decoded JSON body takes
#: several times its size in memory; larger bodies are rarely one document (page them, or
#: raise the limit knowingly).
DEFAULT_MAX_SIZE = 64 * 2**20

#: Bytes read from the connection at a time while the limit is checked.
_READ = 1 << 16


class ResponseTooLargeError(ValueError):
    """A response body is larger than the step's ``max_size=`` (raised before the body is
    read whole). ``url``, ``max_size`` and ``size`` (the Content-Length, or the bytes read
    when the limit was passed) say which and by how much."""

    def __init__(self, message: str, *, url: str, max_size: int, size: int) -> None:
        super().__init__(message)
        self.url = url
        self.max_size = max_size
        self.size = size


def _too_large(
    step: str, response: aiohttp.ClientResponse, max_size: int, size: int, how: str
) -> ResponseTooLargeError:
    url = redact_url(response.url)
    return ResponseTooLargeError(
        f"{step}: the response body of {url} is larger than max_size={max_size} bytes "
        f"({how} {size} bytes); pass a larger max_size= (or max_size=None for no limit) "
        "to the factory, or fetch it in pages",
        url=url,
        max_size=max_size,
        size=size,
    )


async def read_limited(response: aiohttp.ClientResponse, max_size: int | None, step: str) -> bytes:
    """The whole body, or :class:`ResponseTooLargeError` as soon as it is known to be over
    ``max_size`` bytes: from its Content-Length before reading, else while reading."""
    if max_size is None:
        return await response.read()
    length = response.content_length
    if length is not None:
        if length > max_size:
            raise _too_large(step, response, max_size, length, "Content-Length:")
        if "Content-Encoding" not in response.headers:
            # aiohttp reads no more than Content-Length bytes of a body not compressed
            return await response.read()
    body = bytearray()
    content = response.content
    while True:
        chunk = await content.read(_READ)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_size:
            raise _too_large(step, response, max_size, len(body), "read so far:")


def decode_json(response: aiohttp.ClientResponse, raw: bytes) -> Any:
    """What ``response.json(content_type=None)`` gives for ``raw``: ``None`` for an
    empty body."""
    stripped = raw.strip()
    if not stripped:
        return None
    return json.loads(stripped.decode(response.get_encoding()))


def decode_text(response: aiohttp.ClientResponse, raw: bytes) -> str:
    """What ``response.text()`` gives for ``raw``."""
    return raw.decode(response.get_encoding())
