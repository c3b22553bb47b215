"""Fake Microsoft Graph + Entra ID authority (see README.md)."""
from tests.fakes.graph.server import FakeGraph, POLICY_MESSAGE  # noqa: F401
