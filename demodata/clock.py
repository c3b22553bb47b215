"""When mail is sent: a recency- and business-hour-biased clock, and replies moved to working hours."""

from __future__ import annotations

import bisect
import math
import random
import time

from demodata.draw import _cum
from demodata.vocabulary import HQ_OFFSET_MIN


class _Clock:
    """Maps a fraction u in [0, 1) to a UTC timestamp, monotonically.

    Density: 55% uniform over the window plus 45% exponential with a mean of
    ~18 days back from ``now``; weekends at 12%; hours weighted by business
    hours at HQ (UTC-5).
    """

    HW = (
        0.3,
        0.2,
        0.15,
        0.15,
        0.2,
        0.4,
        1.0,
        2.5,
        5.0,
        8.0,
        9.0,
        9.0,
        7.5,
        8.0,
        9.0,
        8.5,
        7.0,
        5.0,
        3.0,
        2.2,
        1.8,
        1.4,
        1.0,
        0.6,
    )

    def __init__(self, now_ts: float, days: int, hq_off_min: int = HQ_OFFSET_MIN):
        off = hq_off_min * 60
        self.HC = _cum(self.HW)
        ht = self.HC[-1]
        local_now = now_ts + off
        local_start = local_now - days * 86400  # the window is exactly [now - days, now]
        today0 = local_now - (local_now % 86400)
        recency = min(18.0, max(days / 4.0, 1.0))
        starts, weights, hmin, hmax = [], [], [], []
        for age in range(days, -1, -1):
            start_local = today0 - age * 86400
            lo = 0.0
            hi = ht
            if start_local < local_start:  # oldest, partial day
                lo = self._hcum(local_start - start_local)
            if age == 0:  # today, up to now
                hi = self._hcum(local_now - today0)
            if hi - lo <= 0:
                continue
            w = 0.55 / days + 0.45 * math.exp(-(age + 0.5) / recency) / recency
            if time.gmtime(start_local).tm_wday >= 5:
                w *= 0.12
            starts.append(start_local - off)
            weights.append(w * (hi - lo) / ht)
            hmin.append(lo)
            hmax.append(hi)
        self.starts, self.weights, self.hmin, self.hmax = starts, weights, hmin, hmax
        self.C = _cum(weights)
        self.total = self.C[-1]
        self.now_ts = now_ts
        self.start_ts = now_ts - days * 86400

    def _hcum(self, secs: float) -> float:
        h = int(secs // 3600)
        if h >= 24:
            return self.HC[-1]
        return (self.HC[h - 1] if h else 0.0) + self.HW[h] * (secs - h * 3600) / 3600.0

    def at(self, u: float) -> float:
        x = u * self.total
        C = self.C
        k = bisect.bisect_right(C, x)
        if k >= len(C):
            k = len(C) - 1
        prev = C[k - 1] if k else 0.0
        f = (x - prev) / self.weights[k]
        f = 0.0 if f < 0 else (0.999999 if f >= 1 else f)
        lo = self.hmin[k]
        target = lo + f * (self.hmax[k] - lo)
        HC = self.HC
        h = bisect.bisect_right(HC, target)
        if h > 23:
            h = 23
        hprev = HC[h - 1] if h else 0.0
        within = (target - hprev) / self.HW[h]
        within = 0.0 if within < 0 else (0.999999 if within >= 1 else within)
        t = self.starts[k] + (h + within) * 3600.0
        if t >= self.now_ts:
            return self.now_ts - 1
        return t if t >= self.start_ts else self.start_ts


def _business_hours(rng: random.Random, ts: float, off_min: int) -> float:
    """Push a reply sent at night or on a weekend to the next working morning (mostly)."""
    local = ts + off_min * 60
    tm = time.gmtime(local)
    if 7 <= tm.tm_hour < 20 and tm.tm_wday < 5:
        return ts
    if rng.random() < 0.15:  # some people do answer at night
        return ts
    day0 = local - (local % 86400)
    if tm.tm_hour >= 7 or tm.tm_wday >= 5:
        day0 += 86400
    while time.gmtime(day0).tm_wday >= 5:
        day0 += 86400
    return day0 + (8 * 3600 + rng.random() * 2.5 * 3600) - off_min * 60
