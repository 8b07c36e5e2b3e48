"""Process hygiene: a server dies with the Python process that started it, and SIGTERM stops
servers through the ``finally`` blocks that own them."""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from types import FrameType
from typing import Any

# ------------------------------------------------------------------------------------------------
# Process hygiene


def _kill_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Runs in the child before exec: the server gets SIGKILL when the Python process that
    started it dies for any reason, even SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


class _TerminateOnSigterm:
    """While a server runs, SIGTERM raises SystemExit in the main thread so the ``finally``
    blocks that stop servers run (the default SIGTERM action would just end the process)."""

    _lock = threading.Lock()
    _users = 0
    _previous: Any = None

    @classmethod
    def acquire(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    return  # someone (pytest, the user) already handles it
                cls._previous = signal.signal(signal.SIGTERM, cls._raise)
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                return
            cls._users -= 1
            if cls._users == 0:
                signal.signal(signal.SIGTERM, cls._previous or signal.SIG_DFL)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)
