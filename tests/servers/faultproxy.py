"""A TCP proxy that cuts, refuses or stalls connections on demand, for fault-injection tests."""

from __future__ import annotations

import contextlib
import itertools
import selectors
import socket
import struct
import threading
import time

from tests.servers.base import LOOPBACK


class _ProxyConn:
    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: socket.socket, cid: int):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.id = cid
        self.closed = False
        self._lock = threading.Lock()
        self._threads_left = 2
        self.s2c = 0  # bytes forwarded server -> client
        self.c2s = 0
        self.s2c_since_arm = 0
        self.arm_epoch = -1

    def close(self, reset: bool = False) -> None:
        """Tear down both sides (idempotent, callable from any thread)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if reset:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                # wakes the pump threads; with SO_LINGER 0 the final close() sends RST
                s.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)

    def _thread_done(self) -> None:
        with self._lock:
            self._threads_left -= 1
            last = self._threads_left == 0
        if last:
            for s in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    s.close()
            self.proxy._forget(self)


class FaultProxy:
    """Threaded TCP proxy on 127.0.0.1 that can inject connection faults.

    ``FaultProxy(target_host, target_port, *, listen_host="127.0.0.1", listen_port=0)``

    Faults:
      - ``cut_after(nbytes, once=True, reset=False)``: once ``nbytes`` more bytes
        have gone server->client on a connection (counted from arming for open
        connections, from accept for new ones), forward exactly up to that
        point, then close both sides.  ``once=True`` disarms after the first
        cut; ``once=False`` cuts every connection.  ``reset=True`` sends RST
        instead of FIN.
      - ``cut_all(reset=False)``: close all open connections now.
      - ``refuse(True/False)``: accept, then immediately close new connections.
      - ``stall(True/False)``: stop forwarding (connections stay open, data is
        held back) — for client timeout tests.
      - ``latency = seconds``: delay every forwarded chunk.
      - ``heal()``: remove all faults.
    Counters: ``connections_total``, ``connections_open``, ``connections_refused``,
    ``cuts``, ``bytes_s2c``, ``bytes_c2s``.
    """

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = LOOPBACK, listen_port: int = 0):
        self.target = (target_host, int(target_port))
        self.host = listen_host
        self._listen_port = listen_port
        self.port = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: dict[int, _ProxyConn] = {}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._tlock = threading.Lock()
        self._unstalled = threading.Event()
        self._unstalled.set()
        self._cut_after: int | None = None
        self._cut_once = True
        self._cut_reset = False
        self._arm_epoch = 0
        self._refuse = False
        self.latency = 0.0
        self.connections_total = 0
        self.connections_refused = 0
        self.cuts = 0
        self.bytes_s2c = 0
        self.bytes_c2s = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "FaultProxy":
        if self._sock is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._listen_port))
        s.listen(128)
        s.settimeout(0.2)
        self._sock = s
        self.port = s.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"FaultProxy-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._unstalled.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self.cut_all()
        with self._tlock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)
        with self._tlock:
            self._threads.clear()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} open={self.connections_open}>"

    # -- controls --------------------------------------------------------------
    @property
    def connections_open(self) -> int:
        with self._lock:
            return len(self._conns)

    def cut_after(self, nbytes: int | None, once: bool = True, reset: bool = False) -> None:
        with self._lock:
            self._cut_after = nbytes
            self._cut_once = once
            self._cut_reset = reset
            self._arm_epoch += 1

    def cut_all(self, reset: bool = False) -> int:
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            c.close(reset=reset)
        if conns:
            with self._lock:
                self.cuts += len(conns)
        return len(conns)

    def refuse(self, on: bool = True) -> None:
        self._refuse = bool(on)

    def stall(self, on: bool = True) -> None:
        if on:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    def heal(self) -> None:
        self.cut_after(None)
        self.refuse(False)
        self.stall(False)
        self.latency = 0.0

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``connections_total >= n``."""
        deadline = time.monotonic() + timeout
        while self.connections_total < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- internals -------------------------------------------------------------
    def _forget(self, conn: _ProxyConn) -> None:
        with self._lock:
            self._conns.pop(conn.id, None)

    def _spawn(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._tlock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                self.connections_total += 1
            if self._refuse:
                with self._lock:
                    self.connections_refused += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            self._spawn(self._open, client, name=f"FaultProxy-open-{self.port}")

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            return
        for s in (client, upstream):
            s.settimeout(None)
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _ProxyConn(self, client, upstream, next(self._ids))
        with self._lock:
            if self._stopping.is_set():
                conn.closed = True
            conn.arm_epoch = self._arm_epoch
            self._conns[conn.id] = conn
        if conn.closed:
            client.close()
            upstream.close()
            self._forget(conn)
            return
        self._spawn(self._pump, conn, upstream, client, True, name=f"FaultProxy-s2c-{conn.id}")
        self._spawn(self._pump, conn, client, upstream, False, name=f"FaultProxy-c2s-{conn.id}")

    def _pump(self, conn: _ProxyConn, src: socket.socket, dst: socket.socket, s2c: bool) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(src, selectors.EVENT_READ)
            while not conn.closed and not self._stopping.is_set():
                if not sel.select(0.2):
                    continue
                if conn.closed:
                    break
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    # orderly EOF: propagate half-close, the other pump finishes the job
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    break
                while not self._unstalled.is_set() and not conn.closed and not self._stopping.is_set():
                    self._unstalled.wait(0.1)
                if self.latency:
                    time.sleep(self.latency)
                if conn.closed:
                    break
                cut = False
                reset = False
                if s2c:
                    with self._lock:
                        limit = self._cut_after
                        if limit is not None:
                            if conn.arm_epoch != self._arm_epoch:
                                conn.arm_epoch = self._arm_epoch
                                conn.s2c_since_arm = 0
                            room = limit - conn.s2c_since_arm
                            if len(data) >= room:
                                data = data[: max(room, 0)]
                                cut = True
                                reset = self._cut_reset
                                self.cuts += 1
                                if self._cut_once:
                                    self._cut_after = None
                            conn.s2c_since_arm += len(data)
                try:
                    if data:
                        dst.sendall(data)
                except OSError:
                    break
                with self._lock:
                    if s2c:
                        conn.s2c += len(data)
                        self.bytes_s2c += len(data)
                    else:
                        conn.c2s += len(data)
                        self.bytes_c2s += len(data)
                if cut:
                    conn.close(reset=reset)
                    break
        finally:
            sel.close()
            # if one direction is finished for good (error/cut), finish the other too
            if conn.closed or s2c:
                conn.close()
            conn._thread_done()
