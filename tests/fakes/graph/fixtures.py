"""pytest fixtures for the fake Graph, for every test (tests/conftest.py imports them once:
imported into a test module, they would start a server of its own for that module)."""

from __future__ import annotations

import pytest

from tests.fakes.graph.server import FakeGraph


@pytest.fixture(scope="session")
def fake_graph_server(tmp_path_factory):
    server = FakeGraph(tmp_path_factory.mktemp("fake-graph")).start()
    yield server
    server.stop()


@pytest.fixture
def graph(fake_graph_server, monkeypatch):
    """The fake, emptied, with its test CA trusted by requests (msal) and the connector."""
    fake_graph_server.reset()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake_graph_server.ca_bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(fake_graph_server.ca_bundle))
    yield fake_graph_server
    fake_graph_server.reset()
