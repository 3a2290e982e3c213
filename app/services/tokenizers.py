"""Endpoint tokenizers come only from the tokenizer directory (SMARTBENCH_TOKENIZER_DIR, default
<data_dir>/tokenizers), by name: a tokenizer.json file, or a folder holding one, directly in
it; or `tiktoken:<encoding>`. An editor never names a path, so nothing else on the server is
opened, and no answer says whether a path outside the directory exists."""

from __future__ import annotations

import re

from app.config import Settings
from app.errors import ValidationFailed

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
TIKTOKEN_RE = re.compile(r"^tiktoken:[a-z0-9_]{1,50}$")


def resolve(settings: Settings, name: str) -> str:
    """The tokenizer to load for `name`: `tiktoken:<encoding>` as is, else the absolute path of
    the file inside the directory. Raises ValueError with a message fit to show."""
    if TIKTOKEN_RE.match(name):
        return name
    if not NAME_RE.match(name) or ".." in name:
        raise ValueError(
            "a tokenizer is a name from the tokenizer directory (letters, digits, '.', '_', '-') "
            "or tiktoken:<encoding>, never a path"
        )
    root = settings.tokenizers.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):  # a symlink that leads out
        raise ValueError(f"no tokenizer named {name!r} in the tokenizer directory")
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file() or not path.resolve().is_relative_to(root):
        raise ValueError(f"no tokenizer named {name!r} in the tokenizer directory")
    return str(path)


def tokenizer_problem(settings: Settings, name: str) -> None:
    """Refuse a tokenizer name being saved (422 naming the field)."""
    try:
        resolve(settings, name)
    except ValueError as exc:
        raise ValidationFailed("the tokenizer cannot be used", fields={"tokenizer": str(exc)}) from exc


def available(settings: Settings) -> list[str]:
    """The names an editor can pick."""
    root = settings.tokenizers
    if not root.is_dir():
        return []
    names = []
    for entry in sorted(root.iterdir()):
        if NAME_RE.match(entry.name) and (
            (entry.is_file() and entry.suffix == ".json") or (entry / "tokenizer.json").is_file()
        ):
            names.append(entry.name)
    return names[:200]
