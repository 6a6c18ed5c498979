"""Whether a process is alive, stopping one for sure, and the watchdog for a killed owner.

Standard library only: besides being imported, this file runs as a script in a process of its
own (``python -I watchdog.py OWNER_PID POSTMASTER_PID WORK_DIR``, see `spawn_watchdog`).
``atexit`` never runs when the stack's owner is killed (nbval stops kernels with SIGKILL) and the
daemonised postmaster would outlive it; the watchdog is not killed with the owner, so it stops
the server and deletes the temp dir when the owner disappears.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["process_alive", "spawn_watchdog", "stop_process", "watch"]

# Signals a postmaster whose owner died, then deletes its folder.
__io__ = "disk, process"

_POLL_S = 0.05


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone.

    A zombie matters here: the daemonised postmaster is reaped by init, not by us, so until
    then ``os.kill(pid, 0)`` would still call it alive.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def stop_process(pid: int, signals: Sequence[int | None], *, wait_s: float = 5.0) -> bool:
    """Send each of ``signals`` in turn until ``pid`` is gone; ``None`` only waits.

    Waits up to ``wait_s`` after each step. Returns True once the process is gone.
    """
    for sig in signals:
        if sig is not None and process_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if not process_alive(pid):
            return True
    return False


def watch(owner: int, postmaster: int, work_dir: str, *, poll_s: float = 0.5) -> None:
    """Block while both processes live; if the owner went first, stop the postmaster.

    ``work_dir`` (``""`` to keep it) is deleted after the postmaster is gone.
    """
    while process_alive(owner) and process_alive(postmaster):
        time.sleep(poll_s)
    if process_alive(postmaster):
        stop_process(postmaster, (signal.SIGQUIT, signal.SIGKILL))
        if work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def spawn_watchdog(postmaster: int, work_dir: Path | None) -> subprocess.Popen[bytes]:
    """Start the watchdog for ``postmaster``, owned by this process, in a session of its own.

    ``work_dir`` None keeps the data (a caller's ``data_dir``).
    """
    return subprocess.Popen(
        # -I: isolated, so the script's own folder (this package) is not put on sys.path.
        [
            sys.executable,
            "-I",
            __file__,
            str(os.getpid()),
            str(postmaster),
            "" if work_dir is None else str(work_dir),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
