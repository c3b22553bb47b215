from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    """The full-size corpus runs only when asked for by name (`-m full_corpus`): CI runs the 10,000 version."""
    if "full_corpus" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if not item.get_closest_marker("full_corpus")]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("full_corpus")])
        items[:] = keep
