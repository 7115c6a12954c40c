"""A short randomized workload against the in-process app on both backends, checked by
the history checker. Some requests are abandoned mid-flight by the client (an unknown
outcome: the append may still commit) and retried with the same ids and preconditions.
Repeat a run with EVSTORE_TEST_SEED=<the printed seed>."""

from __future__ import annotations

import random

import httpx

from tests.support.history import History, Target, Workload, check, read_state, settle_all
from tests.support.seed import run_seed

WRITERS = 8
OPERATIONS = 40  # per writer


async def test_random_workload_keeps_every_promise(client: httpx.AsyncClient) -> None:
    seed = run_seed()
    history = History()
    workload = Workload(history, random.Random(seed), cancel_probability=0.1)
    target = Target("")
    await workload.run([client], target, WRITERS, OPERATIONS)
    await settle_all(client, target, history)
    state = await read_state(client)

    assert check(history, state) == [], f"seed {seed}: {history.summary()}"
    statuses = history.statuses()
    # the run exercised what it claims to: writes, replays, 412s, 422s, abandoned requests
    assert statuses[201] > WRITERS * OPERATIONS / 4, history.summary()
    assert statuses[200] and statuses[412] and statuses[422] and statuses[None], history.summary()
    print(history.summary())
