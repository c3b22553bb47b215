"""The `threadline` command line run inside the test process.

A `python -m app.cli ...` subprocess spends most of its life importing the app before
doing milliseconds of work (`threadline org show`: 1.4-1.7 s of CPU, 4-5.7 s at a load of
7; importing app.cli alone took 1.95 s, measured with -X importtime). Tests that only run
a command and read what it printed and returned run it here instead, through the same
entry point (`app.cli.main`, its error mapping and exit codes), with the environment,
stdin, stdout and stderr a subprocess would have had. Tests where the process itself is
the point (killed or signalled, `serve` and `worker`, two processes at once, a lease held
by another process) keep real subprocesses.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import traceback
from typing import NamedTuple


class CliResult(NamedTuple):
    """What a command left: its exit code and output (as `subprocess.CompletedProcess` names them)."""

    returncode: int
    stdout: str
    stderr: str


# One command at a time: the environment and the standard streams belong to the process.
_lock = threading.Lock()


def cli_env(data_dir, **env: str) -> dict[str, str]:
    """The environment a CLI run on `data_dir` gets: this process's, without a THREADLINE_
    setting of its own or a terminal's, plus the suite's database for `data_dir` (tests/world.py) and `env`."""
    from tests.world import runtime_env

    # Piped output, as in CI: no colours or terminal width from the developer's shell.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "FORCE_COLOR", "TTY_", "COLUMNS"))}
    return {**base, **runtime_env(data_dir, **{"THREADLINE_IDLE": "0", **env})}


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
    return 1


def run_cli(args, env: dict[str, str], *, input: str = "") -> CliResult:
    """Run `threadline ARGS` with exactly the environment `env` (what a subprocess would be
    given), `input` on stdin (not a terminal, like DEVNULL when empty); returns its exit
    code, stdout and stderr. An uncaught exception is printed on stderr and exits 1, as it
    does in a process."""
    import gc

    import app.cli
    from app.settings import get_settings

    with _lock:
        saved_env = dict(os.environ)
        saved_streams = sys.stdin, sys.stdout, sys.stderr
        saved_argv, saved_hook = sys.argv, sys.excepthook
        opened = []
        real_open_runtime = app.cli.open_runtime

        def open_runtime(*a, **kw):  # every command's runtime, closed when it ends as a process's is
            rt = real_open_runtime(*a, **kw)
            opened.append(rt)
            return rt

        # app.cli builds its consoles when first imported, for a terminal if the test process
        # had one then (`pytest -s`): a command's output is a pipe's, as in a process.
        consoles = [c for c in (app.cli.out, app.cli.err) if not c.soft_wrap]
        for console in consoles:
            console.width, console.soft_wrap = 250, True
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
        frozen = gc.get_freeze_count()
        code = 0
        try:
            os.environ.clear()
            os.environ.update(env)
            get_settings.cache_clear()
            app.cli.open_runtime = open_runtime
            sys.stdin = io.StringIO(input)
            sys.stdout, sys.stderr = out, err
            sys.argv = ["threadline", *map(str, args)]
            try:
                app.cli.main()
            except SystemExit as exc:
                code = _exit_code(exc)
            except BaseException:  # noqa: BLE001 - a crash is the command's result, as in a process
                traceback.print_exc(file=err)
                code = 1
        finally:
            out.flush()
            err.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            sys.argv, sys.excepthook = saved_argv, saved_hook
            app.cli.open_runtime = real_open_runtime
            for console in consoles:
                console.width, console.soft_wrap = None, False
            os.environ.clear()
            os.environ.update(saved_env)
            get_settings.cache_clear()
            for rt in opened:
                rt.engine.dispose()
            # `sync` freezes the heap it started with (app.runtime.freeze_startup_heap), which is
            # right for a process that then imports mail and exits, not for this one.
            if gc.get_freeze_count() > frozen:
                gc.unfreeze()
        return CliResult(code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode())
