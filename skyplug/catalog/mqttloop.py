"""paho-mqtt's network loop on an epoll/poll selector, with reconnection.

paho 2.x's own loop (``loop_start``, ``loop_forever``, ``publish.single``) waits with
``select.select()``, which cannot watch a file descriptor >= 1024: paho turns the resulting
``ValueError`` into "connection lost" and reconnects forever, so in a process holding many files
(a long test session, a pipeline) no CONNACK ever arrives and a publish blocks for good. This loop
drives the same client through paho's external-loop API (``loop_read``/``loop_write``/``loop_misc``)
on :mod:`selectors`' default selector (epoll on Linux), which has no such limit.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import threading
import time
from typing import Any

log = logging.getLogger("skyplug.catalog.mqtt")

RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0  # seconds between reconnection attempts (doubling)


class SelectorLoop:
    """Run *client*'s network traffic in a daemon thread, reconnecting with backoff when lost.

    Call :meth:`start` after ``client.connect_async(...)`` (no connection is made before the loop
    runs), :meth:`stop` to end it (after ``client.disconnect()`` if a clean goodbye is wanted).
    """

    def __init__(self, client: Any, name: str = "mqtt-loop") -> None:
        self.client = client
        self.sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._down = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        client.on_socket_open = self._open
        client.on_socket_close = self._close
        client.on_socket_register_write = lambda _c, _u, sock: self._events(sock, write=True)
        client.on_socket_unregister_write = lambda _c, _u, sock: self._events(sock, write=False)

    # --- selector bookkeeping (paho calls these from whichever thread touches the socket)
    def _open(self, _c: Any, _u: Any, sock: Any) -> None:
        with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
            self.sel.register(sock, selectors.EVENT_READ)

    def _close(self, _c: Any, _u: Any, sock: Any) -> None:
        with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
            self.sel.unregister(sock)

    def _events(self, sock: Any, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
            self.sel.modify(sock, events)

    # --- the loop
    def start(self) -> SelectorLoop:
        """Start the loop thread (it makes the first connection)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop thread, send a DISCONNECT if still connected, close the selector."""
        self._stop.set()
        self._thread.join(timeout)
        with contextlib.suppress(Exception):
            if self.client.socket() is not None:
                self.client.disconnect()
                self.client.loop_write()
        with contextlib.suppress(Exception):
            self.sel.close()

    def _connect(self) -> bool:
        try:
            self.client.reconnect()
        except OSError as exc:
            if not self._down:  # once per outage, not on every retry
                host, port = self.client.host, self.client.port
                log.warning("MQTT broker %s:%s unreachable (%s); retrying", host, port, type(exc).__name__)
            self._down = True
            return False
        self._down = False
        return True

    def _run(self) -> None:
        delay = RECONNECT_MIN
        while not self._stop.is_set():
            if self.client.socket() is None:
                if self._connect():
                    delay = RECONNECT_MIN
                else:
                    self._stop.wait(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
                    continue
            with self._lock:
                ready = bool(self.sel.get_map())
            events = self.sel.select(timeout=0.2) if ready else []
            for _key, mask in events:
                if mask & selectors.EVENT_READ:
                    self.client.loop_read()
                if mask & selectors.EVENT_WRITE and self.client.socket() is not None:
                    self.client.loop_write()
            if self.client.socket() is not None:
                self.client.loop_misc()
            elif not self._stop.is_set():
                time.sleep(delay)  # lost: reconnect after a pause (doubling up to RECONNECT_MAX)
                delay = min(delay * 2, RECONNECT_MAX)
