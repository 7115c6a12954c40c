"""The seed of a randomized test: EVSTORE_TEST_SEED if set, else a fresh one, printed so
that a failing run can be repeated (pytest shows captured output on failure)."""

from __future__ import annotations

import os
import random


def run_seed() -> int:
    seed = int(os.environ.get("EVSTORE_TEST_SEED") or random.randrange(2**32))
    print(f"EVSTORE_TEST_SEED={seed}")
    return seed
