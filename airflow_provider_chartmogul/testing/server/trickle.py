"""The "trickle" faults (slow loris): an answer's head at once, then its body one byte at a time;
or ("trickle_head") the status line and headers one byte at a time as well.

Between bytes it watches the socket, so it knows within milliseconds when the client hung up.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

# 26 bytes: at 1.5 s a byte, a client that never gives up holds the request for 39 s.
TRICKLE_BODY = b'{"error":"slow answer"}\n\n\n'


@dataclass(frozen=True)
class Trickle:
    """One trickled answer: when its request arrived, when the trickle ended, and how."""

    path: str
    started: float
    ended: float
    bytes_sent: int
    body_bytes: int
    hung_up: bool  # the client closed the connection before the whole body was sent

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "started": self.started,
            "ended": self.ended,
            "held": self.ended - self.started,
            "bytes_sent": self.bytes_sent,
            "body_bytes": self.body_bytes,
            "hung_up": self.hung_up,
        }


def _client_gone(connection: socket.socket, wait: float) -> bool:
    """Wait up to ``wait`` s; True when the client closed or reset the connection meanwhile.

    The client sends nothing while it waits for its answer (no pipelining), so a readable
    socket means end of stream or a reset.
    """
    readable, _, _ = select.select([connection], [], [], max(wait, 0.0))
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def send_trickled(
    connection: socket.socket,
    head: bytes,
    body: bytes,
    interval: float,
    stopping: threading.Event,
    *,
    path: str,
    started: float,
    head_too: bool = False,
) -> Trickle:
    """Write ``head`` at once (``head_too``: one byte at a time as well), then ``body`` one byte
    every ``interval`` seconds."""
    sent = 0
    hung_up = False
    trickled = head + body if head_too else body
    try:
        if not head_too:
            connection.sendall(head)
        for offset in range(len(trickled)):
            if stopping.is_set() or _client_gone(connection, interval):
                hung_up = not stopping.is_set()
                break
            connection.sendall(trickled[offset : offset + 1])
            sent += 1
        sent = max(0, sent - len(head)) if head_too else sent
    except OSError:
        hung_up = True
    ended = time.monotonic()
    if hung_up:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    return Trickle(path, started, ended, sent, len(body), hung_up)
