"""SIGINT and SIGTERM handled on the running event loop for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals(handler: Callable[[], object]) -> Iterator[None]:
    """Call ``handler`` on SIGINT or SIGTERM meanwhile; the loop's handlers are removed at the end.

    Only the main thread can handle signals: elsewhere (and where the loop cannot) they are left as
    they are. ``handler`` may replace the SIGINT handler (a second Ctrl-C doing more): whatever is
    installed is removed at the end.
    """
    loop = asyncio.get_running_loop()
    handled = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler)
            handled.append(sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
