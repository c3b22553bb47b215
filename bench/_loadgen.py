"""HTTP load generator for bench/api_lookup.py (its own process).

Raw asyncio (uvloop when installed) with keep-alive HTTP/1.1 connections and
pre-built request bytes, so that it costs far less CPU per request than the
server it measures; its own CPU use is reported so that can be checked.

Modes:
  open    fixed arrival rate: request i is due at t0 + i/rate whatever happened
          before; its latency is measured from that scheduled time, so time
          spent queueing (in the client, the kernel or the server) counts and
          a slow server cannot hide its slowness by slowing the client
          (no coordinated omission). Connections are opened as needed (up to
          --max-conns) so a request never waits for an earlier one's answer.
  closed  --concurrency clients, each sending its next request as soon as the
          previous answer arrived, for --duration seconds: the throughput.

Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import time
from collections import Counter, deque
from urllib.parse import quote


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.alive = True

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, int]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        length = 0
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.index(b"\r\n", i + 2)
            length = int(lower[i + 17 : j])
            if length:
                await self.reader.readexactly(length)
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                length += size
                if size == 0:
                    break
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, length

    def close(self) -> None:
        self.alive = False
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001
            pass


def build_requests(args) -> list[bytes]:
    host = f"{args.host}:{args.port}"
    auth = f"Authorization: Bearer {args.token}\r\n" if args.token else ""
    if args.path == "lookup":
        with open(args.emails) as fh:
            emails = [line.strip() for line in fh if line.strip()]
        rng = random.Random(args.seed)
        n = max(1, min(200_000, int(args.rate * args.duration) + 1000 if args.mode == "open" else 200_000))
        picks = (rng.choice(emails) for _ in range(n))
        return [
            (
                f"GET /api/lookup?email={quote(e, safe='@')} HTTP/1.1\r\nHost: {host}\r\n{auth}"
                f"Accept: application/json\r\n\r\n"
            ).encode()
            for e in picks
        ]
    return [f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: application/json\r\n\r\n".encode()]


def summarise(lat: list[float], statuses: Counter, errors: Counter, wall: float, cpu: float) -> dict:
    lat = sorted(lat)

    def pct(q: float) -> float:
        if not lat:
            return float("nan")
        k = max(0, min(len(lat) - 1, int(round(q / 100 * len(lat) + 0.5)) - 1))
        return lat[k] * 1000

    ok = statuses.get(200, 0)
    finite = [x for x in lat if x != float("inf")]
    return {
        "requests": max(len(lat), len(finite) + sum(errors.values())),
        "ok": ok,
        "non_200": {str(k): v for k, v in statuses.items() if k != 200},
        "errors": dict(errors),
        "seconds": wall,
        "throughput": ok / wall if wall else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
        "mean_ms": sum(finite) / len(finite) * 1000 if finite else float("nan"),
        "client_cpu_s": cpu,
        "client_cpu_util": cpu / wall if wall else 0.0,
    }


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def closed_loop(args, requests: list[bytes]) -> dict:
    lat: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    conns = [await Conn.open(args.host, args.port) for _ in range(args.concurrency)]
    counter = iter(range(10**12))
    t_start = time.perf_counter()
    deadline = t_start + args.duration
    cpu0 = cpu_now()

    async def client(conn: Conn) -> None:
        nreq = len(requests)
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            raw = requests[next(counter) % nreq]
            try:
                if not conn.alive:
                    conn = await Conn.open(args.host, args.port)
                status, _ = await asyncio.wait_for(conn.request(raw), args.timeout)
                lat.append(time.perf_counter() - now)
                statuses[status] += 1
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] += 1
                conn.close()

    await asyncio.gather(*(client(c) for c in conns))
    wall = time.perf_counter() - t_start
    out = summarise(lat, statuses, errors, wall, cpu_now() - cpu0)
    out.update(mode="closed", concurrency=args.concurrency, connections=len(conns))
    for c in conns:
        c.close()
    return out


async def open_loop(args, requests: list[bytes]) -> dict:
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    idle: deque[Conn] = deque()
    waiters: deque[asyncio.Future] = deque()
    opened = peak = 0
    for _ in range(min(args.prewarm, args.max_conns)):
        idle.append(await Conn.open(args.host, args.port))
        opened += 1
    peak = opened
    lags: list[float] = []

    async def acquire() -> Conn:
        nonlocal opened, peak
        while idle:
            c = idle.popleft()
            if c.alive:
                return c
            opened -= 1
        if opened < args.max_conns:
            opened += 1
            peak = max(peak, opened)
            return await Conn.open(args.host, args.port)
        fut = loop.create_future()
        waiters.append(fut)
        return await fut

    def release(c: Conn) -> None:
        nonlocal opened
        if not c.alive:
            opened -= 1
            return
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(c)
                return
        idle.append(c)

    async def one(raw: bytes, due: float) -> None:
        c = None
        try:
            c = await asyncio.wait_for(acquire(), args.timeout)
            status, _ = await asyncio.wait_for(c.request(raw), args.timeout)
            lat.append(time.perf_counter() - due)
            statuses[status] += 1
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            # an unanswered request is the worst latency, not a missing sample
            lat.append(float("inf"))
            if c is not None:
                c.close()
        finally:
            if c is not None:
                release(c)

    total = int(args.rate * args.duration)
    interval = 1.0 / args.rate
    tasks = []
    cpu0 = cpu_now()
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        if args.stop_file and i % 50 == 0 and os.path.exists(args.stop_file):
            total = i  # what the load accompanies (an import) has ended
            break
        due = t0 + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - due)
        tasks.append(asyncio.ensure_future(one(requests[i % len(requests)], due)))
    sent_wall = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    out = summarise(lat, statuses, errors, wall, cpu_now() - cpu0)
    lags.sort()
    out.update(
        mode="open",
        rate=args.rate,
        scheduled=total,
        send_seconds=sent_wall,
        connections_opened_max=peak,
        send_lag_p99_ms=lags[int(len(lags) * 0.99) - 1] * 1000 if lags else 0.0,
        send_lag_max_ms=lags[-1] * 1000 if lags else 0.0,
        offered_rate_achieved=total / sent_wall if sent_wall else 0.0,
    )
    # throughput in open loop is the offered rate when the server keeps up
    out["throughput"] = out["ok"] / sent_wall if sent_wall else 0.0
    while idle:
        idle.popleft().close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--path", default="lookup", help="'lookup' (random contact) or a literal path like /healthz")
    ap.add_argument("--emails", help="file with one contact address per line (for lookup)")
    ap.add_argument("--mode", choices=("open", "closed"), required=True)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--max-conns", type=int, default=256)
    ap.add_argument("--prewarm", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stop-file", help="open loop: stop sending once this file exists (--duration is then the most)")
    args = ap.parse_args()
    try:
        import uvloop

        factory, loop_name = uvloop.new_event_loop, "uvloop"
    except ImportError:
        factory, loop_name = None, "asyncio"
    requests = build_requests(args)
    runner = open_loop if args.mode == "open" else closed_loop
    with asyncio.Runner(loop_factory=factory) as r:
        out = r.run(runner(args, requests))
    out["loop"] = loop_name
    out["path"] = args.path
    print(json.dumps(out))


if __name__ == "__main__":
    main()
