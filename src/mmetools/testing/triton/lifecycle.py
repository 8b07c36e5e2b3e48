"""Process hygiene: a server dies with the Python process that started it, and SIGTERM stops
servers through the ``finally`` blocks that own them."""

from __future__ import annotations

import ctypes
import signal
import sys
from typing import Any

from mmetools.core.process import TerminateOnSigterm

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


# The SIGTERM handling servers hold while they run (one implementation, in core).
_TerminateOnSigterm = TerminateOnSigterm
