"""What every importer shares: the parsed shape (a run of steps, each with its requests as
smartbench samples when the file has them, else the tool's aggregates mapped onto smartbench's
names), and errors that name the file, the line and the field that failed.

Importers are pure: they read bytes and return an ImportedRun; they never touch the database.
Nothing is stored until every file of an import has parsed (services/imports.py)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from app.probe.types import Sample
from app.summary import Distribution

MAX_FIGURE = 1e12  # no latency (ms), rate, count or Unix time (s) in a result file is larger
MAX_INT = 2**31 - 1  # the integer columns' range
MAX_TEXT = {"tool_version": 50, "model": 200}  # strings a file sets on the run


class ImportProblem(ValueError):
    """A file that cannot be imported, with where it failed."""

    def __init__(self, file: str, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.file, self.message, self.line, self.field = file, message, line, field
        where = f"{file}" + (f", line {line}" if line else "") + (f", field {field}" if field else "")
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # crosses from the import's worker process
        return _problem, (self.file, self.message, self.line, self.field)


def _problem(file: str, message: str, line: int | None, field: str | None) -> ImportProblem:
    return ImportProblem(file, message, line=line, field=field)


@dataclass
class ImportedStep:
    concurrency: int | None
    request_rate: float | None
    samples: list[Sample] | None  # the requests, when the file has them
    aggregates: dict[str, object] = field(default_factory=dict)  # StepSummary fields, when it has not
    tool_figures: dict[str, float | None] = field(default_factory=dict)  # the tool's own headline figures
    requested_output_tokens: int | None = None
    token_source: str = "tokenizer"


@dataclass
class ImportedRun:
    tool: str  # aiperf | genai-perf | vllm | guidellm | inference-perf
    tool_version: str | None
    files: list[str]
    steps: list[ImportedStep]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    model: str | None = None
    input_tokens: float | None = None  # the workload the tool ran
    output_tokens: float | None = None
    notes: list[str] = field(default_factory=list)  # definitions converted or flagged, field by field


class Doc:
    """A parsed JSON document that reports a missing or mistyped field with its line."""

    def __init__(self, file: str, text: str, data: Any, *, line: int | None = None) -> None:
        self.file, self.text, self.data, self.line = file, text, data, line

    @classmethod
    def parse(cls, file: str, raw: bytes) -> Doc:
        text = decode(file, raw)
        # orjson: a quarter of the json module's time for the same file (it holds the GIL while
        # it parses, so a 50 MB file stalls other threads about 0.2 s instead of 0.8 s); it
        # refuses NaN and Infinity, integers past 64 bits and nesting past 1,024 levels.
        try:
            return cls(file, text, orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            message = str(exc).split(": line ", 1)[0]
            raise ImportProblem(
                file, f"not valid JSON ({message}, column {exc.colno})", line=exc.lineno
            ) from exc

    def problem(self, path: tuple[str | int, ...], message: str) -> ImportProblem:
        return ImportProblem(
            self.file, message, line=self.line or locate(self.text, path), field=dotted(path)
        )

    def get(self, *path: str | int, default: Any = ..., kind: type | tuple[type, ...] | None = None) -> Any:
        node = self.data
        for i, key in enumerate(path):
            missing = (
                not isinstance(node, dict) or key not in node
                if isinstance(key, str)
                else not isinstance(node, list) or not -len(node) <= key < len(node)
            )
            if missing:
                if default is not ...:
                    return default
                raise self.problem(path[: i + 1], "missing")
            node = node[key]
        if kind is not None and node is not None and not isinstance(node, kind):
            raise self.problem(path, f"expected {_kind_name(kind)}, found {type(node).__name__}")
        if kind is not None and isinstance(node, float) and not math.isfinite(node):
            raise self.problem(path, "not a finite number")
        if kind is not None and isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 2**63:
            raise self.problem(path, "out of range")
        return node

    def number(self, *path: str | int, default: Any = ...) -> float | None:
        """A figure: finite, not negative, at most MAX_FIGURE (no time, count or rate in a
        result file is either)."""
        value = self.get(*path, default=default, kind=(int, float))
        if isinstance(value, bool):
            raise self.problem(path, "expected a number, found a boolean")
        if value is None:
            return None
        if value < 0:
            raise self.problem(path, "negative")
        if value > MAX_FIGURE:
            raise self.problem(path, f"out of range (more than {MAX_FIGURE:g})")
        return float(value)

    def integer(self, *path: str | int, default: Any = ...) -> int | None:
        """A count or a load level: a whole number within the integer columns' range."""
        value = self.number(*path, default=default)
        if value is None:
            return None
        if value != int(value) or value > MAX_INT:
            raise self.problem(path, "expected a whole number within range")
        return int(value)


COUNTED = "tokenizer"  # output tokens as the tool counted them (its tokenizer, or the server's usage)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
        bool: "true or false",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def timestamp(doc: Doc, *path: str | int) -> datetime | None:
    """A Unix time in seconds as a date, or a problem naming the field."""
    seconds = doc.number(*path, default=None)
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise doc.problem(path, "not a time smartbench can read") from exc


def decode(file: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportProblem(file, "not UTF-8 text", line=line) from exc


def dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def locate(text: str, path: tuple[str | int, ...]) -> int | None:
    """The line of a field, found by walking its keys through the text in order (good enough for
    the pretty-printed and single-line JSON the tools write)."""
    at = 0
    found = None
    for key in path:
        if isinstance(key, int):
            continue
        match = re.compile(r'"' + re.escape(key) + r'"\s*:').search(text, at)
        if match is None:
            break
        at, found = match.end(), match.start()
    return None if found is None else text.count("\n", 0, found) + 1


def distribution(
    values: Mapping[str, object], *, scale: float = 1.0, names: dict[str, str] | None = None
) -> Distribution:
    """A tool's statistics block as a smartbench distribution (`names` maps ours to theirs)."""
    names = names or {}

    def pick(ours: str) -> float | None:
        theirs = names.get(ours, ours)
        value = values.get(theirs)
        return (
            None if not isinstance(value, (int, float)) or isinstance(value, bool) else float(value) * scale
        )

    return Distribution(**{key: pick(key) for key in ("mean", "p50", "p90", "p95", "p99", "min", "max")})
