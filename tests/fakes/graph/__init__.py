"""Fake Microsoft Graph + Entra ID authority (see README.md)."""

from tests.fakes.graph.server import POLICY_MESSAGE, POLICY_MESSAGE_RAOP, FakeGraph  # noqa: F401
