"""Named crash points for the crash-safety tests, as databases have failpoints.

``crash_point("relay.before_broadcast")`` kills the process with SIGKILL (what ``kill -9``
does: no cleanup, no flush) when ``GATEWAY_CRASH_POINT`` names it, and costs one dict lookup
otherwise. The tests use it to stop the gateway at the exact step whose recovery they check.
"""

from __future__ import annotations

import os
import signal

_ENV = "GATEWAY_CRASH_POINT"


def crash_point(name: str) -> None:
    if os.environ.get(_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
