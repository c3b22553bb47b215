"""The app itself served on a loopback port, and how tests start headless Chromium."""

from __future__ import annotations

from tests.servers.base import LOOPBACK, free_port, wait_for_port


class AppServer:
    """Threadline's FastAPI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, fastapi_app, host: str = LOOPBACK, port: int | None = None, tls: tuple | None = None):
        """``tls``: (certificate file, key file) to serve HTTPS instead of HTTP."""
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.scheme = "https" if tls else "http"
        ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        config = uvicorn.Config(fastapi_app, host=self.host, port=self.port, log_level="warning", lifespan="on", **ssl)
        self._server = uvicorn.Server(config)
        self._thread = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "AppServer":
        import threading

        self._thread = threading.Thread(target=self._server.run, name="test-app-server", daemon=True)
        self._thread.start()
        wait_for_port(self.host, self.port, timeout=15)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
