"""Wall-clock time in one place, so records and tests agree on what "now" is."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()
