"""The signal that the pre-created Measurement Set may be written, and how (its tile
layouts, or None: through casacore). The process creating the MS sets it; the subband
tasks, which read and phase meanwhile, wait on it.

- :class:`LocalReady`: one process (the serial runner, tests): a ``threading.Event``.
- :class:`DaskReady`: tasks on a dask cluster: a ``distributed.Event`` says *when*, a
  ``distributed.Variable`` of the same name holds the layouts. Waiting blocks on the
  scheduler; nothing polls files.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Protocol

Layouts = dict[str, dict[str, Any]] | None


class ReadySignal(Protocol):
    def set(self, layouts: Layouts) -> None:
        """Tell the waiting tasks the MS exists and how to write it."""

    def wait(self, timeout_s: float) -> bool:
        """Whether it was set within ``timeout_s`` (0: just look)."""

    def layouts(self) -> Layouts:
        """The layouts it was set with (call only after :meth:`wait` said True)."""

    def release(self) -> None:
        """Forget it (after every task is done or cancelled)."""


class LocalReady:
    """The signal within one process."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._layouts: Layouts = None

    def set(self, layouts: Layouts) -> None:
        self._layouts = layouts
        self._event.set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s) if timeout_s > 0 else self._event.is_set()

    def layouts(self) -> Layouts:
        return self._layouts

    def release(self) -> None:
        """Nothing is held outside this object."""


class DaskReady:
    """The signal across a dask cluster; pickles to its name, so it travels with a task.

    Each look costs a round trip to the scheduler (~0.4 ms idle, more on a busy worker),
    so a task looks at most every ``min_interval_s`` without waiting, and remembers what it
    saw once set."""

    min_interval_s = 0.05

    def __init__(self, client: Any = None, name: str | None = None) -> None:
        self.name = name or f"dsa110-ms-ready-{uuid.uuid4().hex}"
        self._client = client  # the creating side's client; workers use their own
        self._seen = False
        self._last_look = float("-inf")
        self._layouts: Layouts = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(None, state["name"])  # type: ignore[misc]

    def _event(self) -> Any:
        from distributed import Event

        return Event(self.name, client=self._client)

    def _variable(self) -> Any:
        from distributed import Variable

        return Variable(self.name, client=self._client)

    def set(self, layouts: Layouts) -> None:
        self._variable().set(json.dumps(layouts))
        self._event().set()

    def wait(self, timeout_s: float) -> bool:
        if self._seen:
            return True
        now = time.monotonic()
        if timeout_s <= 0 and now - self._last_look < self.min_interval_s:
            return False
        self._last_look = now
        ev = self._event()
        self._seen = bool(ev.wait(timeout_s)) if timeout_s > 0 else bool(ev.is_set())
        if self._seen:
            self._layouts = json.loads(self._variable().get())
        return self._seen

    def layouts(self) -> Layouts:
        return self._layouts

    def release(self) -> None:
        try:
            self._event().clear()
            self._variable().delete()
        except Exception:  # noqa: BLE001 - a scheduler already gone holds nothing
            pass


__all__ = ["ReadySignal", "LocalReady", "DaskReady", "Layouts"]
