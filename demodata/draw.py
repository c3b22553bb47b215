"""Random draws: weighted choice over cumulative weights, and a faster random.Random."""

from __future__ import annotations

import bisect
import random
from typing import Iterable, Sequence


def _wchoice(rng: random.Random, items: Sequence, cum: Sequence[float]):
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _cum(weights: Iterable[float]) -> list[float]:
    out, s = [], 0.0
    for w in weights:
        s += w
        out.append(s)
    return out


class _FastRandom(random.Random):
    """random.Random with cheap float-based choice/randint/randrange.

    The stdlib versions go through ``_randbelow`` (several Python calls per
    draw); they dominate the generator's profile. The tiny modulo bias of the
    float method is irrelevant here. Still fully deterministic per seed.
    """

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randint(self, a, b):
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start, stop=None, step=1):
        if stop is None and step == 1:
            return int(self.random() * start)
        return super().randrange(start, stop, step)
