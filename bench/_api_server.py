"""Launcher for the API under uvicorn, used by bench/api_lookup.py.

    THREADLINE_DATA_DIR=... python bench/_api_server.py --port 8123 [--workers 1]

Builds `app.api.create_app(open_runtime(settings))` without the sync scheduler.
With more than one worker uvicorn needs an import string, so the app comes
from the `make_app` factory below in every worker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def make_app():
    from app.api import create_app
    from app.runtime import open_runtime
    from app.settings import load_settings

    # migrate=False: the benchmark database is already at the newest schema.
    app = create_app(open_runtime(load_settings(), migrate=False), run_scheduler=False)

    # A second baseline that only the benchmark adds: the cheapest request this
    # app can serve. /livez is matched after every router (about 90 route
    # checks); this route is matched first, so the two baselines bracket what
    # routing alone costs.
    @app.get(FIRST_ROUTE, include_in_schema=False)
    async def first_route():
        return {"ok": True}

    app.router.routes.insert(0, app.router.routes.pop())
    return app


FIRST_ROUTE = "/bench/first-route"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    import faulthandler
    import signal

    # `kill -USR1 <pid>` writes every thread's stack to the log: how the benchmark
    # sees what a stalled server is waiting for.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    import uvicorn

    common = dict(host=args.host, port=args.port, log_level="warning", access_log=False)
    if args.workers == 1:
        uvicorn.run(make_app(), **common)
    else:
        uvicorn.run("bench._api_server:make_app", factory=True, workers=args.workers, **common)


if __name__ == "__main__":
    main()
