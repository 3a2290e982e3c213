"""An incremental Server-Sent Events parser working on bytes.

Tolerates CRLF, lone CR, reads split anywhere (even inside a CRLF), comment lines and multi-line
data fields. Only `data` matters to us; `event`, `id` and `retry` fields are ignored."""

from __future__ import annotations


class LineTooLong(Exception):
    """A line grew past the cap without ending: a broken or hostile stream."""


class SSEParser:
    __slots__ = ("_buf", "_data", "_max_line", "_pending_cr")

    def __init__(self, max_line: int = 1 << 20) -> None:
        self._buf = b""
        self._data: bytes | None = None
        self._max_line = max_line
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Bytes in; the data payloads of the events completed by them out."""
        if b"\r" in chunk or self._pending_cr:
            if self._pending_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]  # the LF of a CRLF split across reads
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        events: list[bytes] = []
        start = 0
        find = buf.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if nl == start:  # blank line: dispatch
                if self._data is not None:
                    events.append(self._data)
                    self._data = None
            elif buf.startswith(b"data:", start):
                value = buf[start + 6 : nl] if buf[start + 5 : start + 6] == b" " else buf[start + 5 : nl]
                self._data = value if self._data is None else self._data + b"\n" + value
            # comments (":...") and other fields are ignored
            start = nl + 1
        self._buf = buf[start:] if start < len(buf) else b""
        if len(self._buf) > self._max_line:
            raise LineTooLong(f"an SSE line exceeded {self._max_line} bytes")
        return events

    def close(self) -> list[bytes]:
        """End of stream: a final event without its blank line still counts (as browsers do not)."""
        events: list[bytes] = []
        if self._buf:
            tail, self._buf = self._buf, b""
            events = self.feed(tail + b"\n\n")
        elif self._data is not None:
            events.append(self._data)
            self._data = None
        return events

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._data is not None
