"""Named crash points for the crash-safety tests, as databases have failpoints.

``crash_point("relay.before_broadcast")`` kills the process with SIGKILL (what ``kill -9``
does: no cleanup, no flush) when ``GATEWAY_CRASH_POINT`` names it, and costs one dict lookup
otherwise. The tests use it to stop the gateway at the exact step whose recovery they check.
"""

from __future__ import annotations

import os
import signal

_ENV = "GATEWAY_CRASH_POINT"


def crash_point(name: str, where: str | None = None) -> None:
    """Die here when ``GATEWAY_CRASH_POINT`` is ``name``, or ``name@where`` (a point of one
    network: ``relay.before_broadcast@31338``)."""
    wanted = os.environ.get(_ENV)
    if wanted is not None and (
        wanted == name or (where is not None and wanted == f"{name}@{where}")
    ):
        os.kill(os.getpid(), signal.SIGKILL)
