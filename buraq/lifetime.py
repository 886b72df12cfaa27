"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def watch_parent(parent: int, on_orphaned: Callable[[], None] | None = None, every: float = 0.5) -> None:
    """Call ``on_orphaned`` (default: exit at once) once ``parent`` is no longer our parent, even after a SIGKILL.

    The parent passes its pid down: one that died while we were still starting must count too.
    Polling getppid works on every platform; PR_SET_PDEATHSIG would fire when the parent's
    spawning thread ends, not the parent, which is wrong for an asyncio supervisor.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        (on_orphaned or (lambda: os._exit(1)))()

    threading.Thread(target=watch, name="buraq-parent-watch", daemon=True).start()
