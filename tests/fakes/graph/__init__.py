"""Fake Microsoft Graph + Entra ID authority (see README.md)."""

from tests.fakes.graph.server import POLICY_MESSAGE, FakeGraph  # noqa: F401
