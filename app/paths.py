"""Where templates, static files and migrations live: inside the installed package (wheel),
or at the repository root (editable install, source checkout)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"smartbench resource directory {name!r} is missing from this installation")
