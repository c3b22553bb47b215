"""CalendarWindow.for_cursor: the one rule of Graph's and Google's calendar cursors for when a
stored round's window has slid far enough to start a fresh round over the current one."""

from datetime import datetime, timedelta, timezone

from connectors.base import CalendarWindow

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=timezone.utc)
W = CalendarWindow(past_days=30, future_days=10)


def iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_cursor_without_a_window_gets_the_current_one_and_is_not_a_slide():
    start, end = W.bounds(NOW)
    assert W.for_cursor(None, NOW) == ([iso(start), iso(end)], False)


def test_a_stored_window_is_kept_until_it_has_slid_a_week_then_the_current_one_replaces_it():
    start, end = W.bounds(NOW)
    six_days_old = [iso(start - timedelta(days=6)), iso(end - timedelta(days=6))]
    assert W.for_cursor(six_days_old, NOW) == (six_days_old, False)
    week_old = [iso(start - timedelta(days=7)), iso(end - timedelta(days=7))]
    assert W.for_cursor(week_old, NOW) == ([iso(start), iso(end)], True)


def test_a_window_setting_changed_starts_the_current_window_at_once():
    """Reading further ahead (or back) by a few days moved the start by less than a week, so the
    old window was kept for up to a week and the meetings the new setting takes in waited."""
    start, end = W.bounds(NOW)
    stored = [iso(start - timedelta(days=2)), iso(end - timedelta(days=2))]
    further_ahead = CalendarWindow(past_days=30, future_days=13)
    assert further_ahead.for_cursor(stored, NOW) == ([iso(x) for x in further_ahead.bounds(NOW)], True)
    further_back = CalendarWindow(past_days=33, future_days=10)
    assert further_back.for_cursor(stored, NOW) == ([iso(x) for x in further_back.bounds(NOW)], True)
