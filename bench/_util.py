"""Helpers shared by the benchmark scripts: machine facts, measured child
processes (wall time, CPU, peak memory of the whole process tree), tables."""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GNU_TIME = "/usr/bin/time"


# -- machine ---------------------------------------------------------------------


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def mem_total_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_summary() -> str:
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}: nproc={os.cpu_count()}, "
        f"RAM={mem_total_mb() / 1024:.1f} GiB, CPU={cpu_model()}, "
        f"Python {platform.python_version()}, kernel {platform.release()}, load average {loadavg()}"
    )


def uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average: {loadavg()}"


def code_fingerprint(paths: list[str]) -> str:
    """A short digest of the application files a benchmark exercises (the code
    changes under our feet; the digest ties figures to one version), plus the
    newest of their modification times."""
    import hashlib

    h = hashlib.sha256()
    newest = 0.0
    for pattern in paths:
        for f in sorted(REPO.glob(pattern)):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO)).encode())
                h.update(f.read_bytes())
                newest = max(newest, f.stat().st_mtime)
    stamp = datetime.fromtimestamp(newest, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if newest else "?"
    return f"{h.hexdigest()[:12]} (newest file {stamp})"


# -- process trees --------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def descendants(pid: int, include_self: bool = True) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen if include_self else seen[1:]


def _rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, pss


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of one process; with reaped_children also its waited-for children's."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if reaped_children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a daemon and everything it forked: live descendants plus the reaped ones
    (take differences of two readings)."""
    return cpu_seconds(pid, reaped_children=True) + sum(cpu_seconds(p) for p in descendants(pid, include_self=False))


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            parts = fh.read().split(b"\0")
    except OSError:
        return "?"
    parts = [p.decode(errors="replace") for p in parts if p]
    if not parts:
        return "?"
    name = os.path.basename(parts[0])
    if name.startswith("python") and len(parts) > 1:
        rest = parts[1:]
        if rest[0] in ("-m", "-c") and len(rest) > 1:
            return f"{name} {rest[0]} {rest[1][:40]}"
        return f"{name} {os.path.basename(rest[0])}"
    return name


class TreeSampler(threading.Thread):
    """Samples the memory of a process and all its descendants every `interval` s.

    peak_rss_mb: highest sum of RSS over the tree (shared pages counted once per process)
    peak_pss_mb: highest sum of PSS (shared pages split between sharers: the real footprint)
    peak_single_mb: highest RSS of any one process
    """

    def __init__(self, root_pid: int, interval: float = 0.1, exclude_root: bool = False):
        super().__init__(daemon=True)
        self.root_pid, self.interval, self.exclude_root = root_pid, interval, exclude_root
        self.peak_rss_kb = self.peak_pss_kb = self.peak_single_kb = 0
        self.max_procs = 0
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}  # last CPU seconds seen per process
        self._stop_evt = threading.Event()

    def sample(self) -> None:
        pids = descendants(self.root_pid, include_self=not self.exclude_root)
        rss_sum = pss_sum = 0
        for p in pids:
            rss, pss = _rss_pss_kb(p)
            cpu = cpu_seconds(p)
            if cpu or p not in self.cpu_by_pid:
                # the name is read again: a forked child may exec() after the first look
                name = proc_name(p)
                if name == "?" and p in self.cpu_by_pid:
                    name = self.cpu_by_pid[p][0]
                self.cpu_by_pid[p] = (name, cpu or self.cpu_by_pid.get(p, ("", 0.0))[1])
            rss_sum += rss
            pss_sum += pss
            self.peak_single_kb = max(self.peak_single_kb, rss)
        self.peak_rss_kb = max(self.peak_rss_kb, rss_sum)
        self.peak_pss_kb = max(self.peak_pss_kb, pss_sum)
        self.max_procs = max(self.max_procs, len(pids))

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024

    @property
    def peak_pss_mb(self) -> float:
        return self.peak_pss_kb / 1024

    @property
    def peak_single_mb(self) -> float:
        return self.peak_single_kb / 1024


@dataclass
class Measured:
    argv: list[str]
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    user_s: float = 0.0
    sys_s: float = 0.0
    maxrss_mb: float = 0.0  # GNU time's "Maximum resident set size" (largest waited-for process)
    tree_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0
    tree_single_mb: float = 0.0
    tree_procs: int = 0
    load_before: str = ""
    load_after: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def run_measured(
    argv: list[str],
    *,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    interval: float = 0.1,
) -> Measured:
    """Run argv under /usr/bin/time -v (when present) while sampling its process tree."""
    use_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.NamedTemporaryFile("r", suffix=".time", delete=False) as tf:
        time_file = tf.name
    full = [GNU_TIME, "-v", "-o", time_file, *argv] if use_time else list(argv)
    load_before = loadavg()
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, interval=interval, exclude_root=use_time)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in reversed(descendants(proc.pid)):
            try:
                os.kill(p, 9)
            except OSError:
                pass
        out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    after = os.times()
    sampler.stop()
    m = Measured(list(argv), proc.returncode, seconds, out, err, load_before=load_before, load_after=loadavg())
    m.tree_rss_mb, m.tree_pss_mb = sampler.peak_rss_mb, sampler.peak_pss_mb
    m.tree_single_mb, m.tree_procs = sampler.peak_single_mb, sampler.max_procs
    m.extra["cpu_by_process"] = sorted(sampler.cpu_by_pid.values(), key=lambda x: -x[1])
    if use_time:
        text = Path(time_file).read_text(errors="replace")
        m.user_s = _time_field(text, "User time (seconds)")
        m.sys_s = _time_field(text, "System time (seconds)")
        m.maxrss_mb = _time_field(text, "Maximum resident set size (kbytes)") / 1024
        # GNU time exits with the child's status; if the child was killed it says so
        sig = re.search(r"Command terminated by signal (\d+)", text)
        if sig:
            m.returncode = -int(sig.group(1))
    else:
        m.user_s = after.children_user - before.children_user
        m.sys_s = after.children_system - before.children_system
        import resource

        m.maxrss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    os.unlink(time_file)
    return m


def _time_field(text: str, label: str) -> float:
    m = re.search(re.escape(label) + r":\s*([\d.]+)", text)
    return float(m.group(1)) if m else 0.0


# -- generated mailboxes (demodata) ------------------------------------------------------


def stream_counts(seed: int, reps: int, companies, probe: int):
    """A probe of demodata's stream: (corpus, copies per rep address, probe size). A rep's
    count / probe is its share of the stream, which says how many copies must be generated
    for its mailbox to hold n of them (reps share threads, and the busiest get far more)."""
    from demodata import generate

    corpus, it = generate(seed=seed, n_messages=probe, reps=reps, companies=companies)
    return corpus, Counter(m.mailbox for m in it), probe


def deliver_exact(
    dv,
    users: dict[str, str],
    password: str,
    n: int,
    share: float,
    *,
    seed: int,
    reps: int,
    companies,
    log=print,
    chunk: int = 1000,
):
    """Deliver exactly n messages into each of the given reps' mailboxes on Dovecot `dv`.

    One generated company (demodata: INBOX, Sent, Archive; threads shared between reps):
    each copy goes to its rep's Dovecot user (users: rep address -> user) until that
    mailbox holds n, so every mailbox gets the first n of its copies in the stream's time
    order and a thread between two of them stays in both. `share` is the smallest share
    of the stream among those reps (stream_counts); the stream is sized from it,
    ceil(n / share * 1.04) + 200 copies, and made again 15% longer while a mailbox came
    out short. Generation stops once every mailbox is full. Writes straight into the
    Maildirs (no IMAP session may be open on them).
    Returns (corpus, {user: Counter of folders}, bytes delivered, copies generated)."""
    from demodata import generate

    margin = 1.04
    while True:
        total = int(math.ceil(n / share * margin)) + 200
        corpus, it = generate(seed=seed, n_messages=total, reps=reps, companies=companies)
        for user in users.values():
            dv.add_user(user, password)
        folders = {user: Counter() for user in users.values()}
        got = dict.fromkeys(users.values(), 0)
        pending: dict[str, list] = {user: [] for user in users.values()}
        size, short = 0, len(users)
        for m in it:
            user = users.get(m.mailbox)
            if user is None or got[user] == n:
                continue
            got[user] += 1
            folders[user][m.folder] += 1
            size += len(m.raw)
            pending[user].append((m.raw, m.folder, m.internaldate, "S"))
            if got[user] == n or len(pending[user]) >= chunk:
                dv.deliver_many(user, pending[user], atomic=False)
                pending[user] = []
                if got[user] == n:
                    short -= 1
                    if not short:
                        return corpus, folders, size, total
        low = min(got, key=got.get)
        log(
            f"  only {got[low]} of {n} messages for {low} ({short} mailboxes short) in {total:,} generated; "
            "retrying with more"
        )
        for user in users.values():
            dv.remove_user(user)
        margin *= 1.15


# -- numbers and tables ---------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = []
    for n, r in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=False)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"
