"""The history checker catches each broken promise it claims to check: a small correct
history passes, and each mutation of it (a lost, moved, doubled or half-written event, a
hole, a stream read that differs, an SSE gap) is reported."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.support.history import (
    Attempt,
    Event,
    History,
    Operation,
    SseConnection,
    State,
    Subscriber,
    check,
)


def sent(event_id: str) -> Event:
    return {"id": event_id, "type": "Placed", "data": {"n": 1}}


def stored(event_id: str, stream_id: str, version: int, position: int) -> Event:
    return {**sent(event_id), "stream_id": stream_id, "version": version, "position": position}


def ok(*receipt: tuple[str, int, int], status: int = 201) -> Attempt:
    return Attempt("ok", status, 0, 0, receipt=list(receipt))


def example() -> tuple[History, State]:
    """a1,a2 acknowledged on A; b1 unknown but written on B; c1 unknown, not written;
    d1 failed (412); a3 acknowledged after a timeout; one subscriber that reconnected."""
    history = History(
        [
            Operation("A", [sent("a1"), sent("a2")], {}, [ok(("a1", 1, 1), ("a2", 2, 2))]),
            Operation("B", [sent("b1")], {"If-None-Match": "*"}, [Attempt("unknown", 503, 0, 0)]),
            Operation("C", [sent("c1")], {}, [Attempt("unknown", None, 0, 0)]),
            Operation("D", [sent("d1")], {"If-Match": '"7"'}, [Attempt("failed", 412, 0, 0)]),
            Operation(
                "A",
                [sent("a3")],
                {"If-Match": '"2"'},
                [Attempt("unknown", None, 0, 0), ok(("a3", 3, 4), status=200)],
            ),
        ],
        [Subscriber([SseConnection(0, [1, 2], ["a1", "a2"]), SseConnection(2, [3], ["b1"])])],
    )
    log = [
        stored("a1", "A", 1, 1),
        stored("a2", "A", 2, 2),
        stored("b1", "B", 1, 3),
        stored("a3", "A", 3, 4),
    ]
    streams = {"A": [log[0], log[1], log[3]], "B": [log[2]]}
    return history, State(log, 4, streams)


def lose_ack(h: History, s: State) -> None:
    del s.log[3]
    s.streams["A"].pop()
    s.head = 3


def move_ack(h: History, s: State) -> None:
    s.log[0]["id"], s.log[1]["id"] = s.log[1]["id"], s.log[0]["id"]  # streams share these


def write_failed(h: History, s: State) -> None:
    s.log.append(stored("d1", "D", 1, 5))
    s.streams["D"] = [s.log[-1]]
    s.head = 5


def half_written(h: History, s: State) -> None:
    h.operations[2].events.append(sent("c2"))
    s.log.append(stored("c1", "C", 1, 5))
    s.streams["C"] = [s.log[-1]]
    s.head = 5


def doubled(h: History, s: State) -> None:
    s.log.append(stored("a1", "E", 1, 5))
    s.streams["E"] = [s.log[-1]]
    s.head = 5


def hole(h: History, s: State) -> None:
    s.log[3] = s.streams["A"][2] = stored("a3", "A", 3, 5)
    h.operations[4].attempts[1].receipt = [("a3", 3, 5)]
    s.head = 5


def version_gap(h: History, s: State) -> None:
    s.log[3] = s.streams["A"][2] = stored("a3", "A", 4, 4)
    h.operations[4].attempts[1].receipt = [("a3", 4, 4)]


def stream_differs(h: History, s: State) -> None:
    s.streams["A"] = s.streams["A"][:2]


def data_changed(h: History, s: State) -> None:
    s.log[2] = s.streams["B"][0] = {**s.log[2], "data": {"n": 2}}


def unsent(h: History, s: State) -> None:
    s.log.append(stored("zz", "Z", 1, 5))
    s.streams["Z"] = [s.log[-1]]
    s.head = 5


def receipts_differ(h: History, s: State) -> None:
    h.operations[4].attempts.append(ok(("a3", 3, 3), status=200))


def precondition_ignored(h: History, s: State) -> None:
    h.operations[0].headers = {"If-Match": '"5"'}


def sse_gap(h: History, s: State) -> None:
    h.subscribers[0].connections[0] = SseConnection(0, [1, 3], ["a1", "b1"])


def sse_resume_gap(h: History, s: State) -> None:
    h.subscribers[0].connections[1] = SseConnection(3, [4], ["a3"])


def sse_wrong_event(h: History, s: State) -> None:
    h.subscribers[0].connections[1].ids = ["a3"]


MUTATIONS: dict[str, tuple[Callable[[History, State], None], str]] = {
    "lost acknowledged event": (lose_ack, "acknowledged event a3 lost"),
    "acknowledged event moved": (move_ack, "acknowledged event a1 at A v2 p2"),
    "failed request written": (write_failed, "failed request ['d1'] wrote 1"),
    "unknown request half written": (half_written, "unknown request ['c1', 'c2'] half written"),
    "duplicate id": (doubled, "duplicate event ids in the log: ['a1']"),
    "hole in positions": (hole, "log positions are not 1..n: holes [4]"),
    "gap in versions": (version_gap, "A: versions [1, 2, 4] are not 1..n"),
    "stream read differs": (stream_differs, "A: GET /streams differs"),
    "data changed": (data_changed, "B: request ['b1'] stored as"),
    "event nobody sent": (unsent, "events in the log that no request sent: ['zz']"),
    "retry got another receipt": (receipts_differ, "A: receipts differ between attempts"),
    "precondition ignored": (precondition_ignored, "A: 201 at v1 despite"),
    "SSE skipped an event": (sse_gap, "subscriber 0 connection 0: delivered [1, 3]"),
    "SSE resumed past a gap": (sse_resume_gap, "subscriber 0 connection 1: started after 3"),
    "SSE delivered another event": (sse_wrong_event, "delivered ids differ from the log"),
}


def test_a_correct_history_passes() -> None:
    assert check(*example()) == []


@pytest.mark.parametrize("name", MUTATIONS)
def test_the_checker_catches(name: str) -> None:
    mutate, expected = MUTATIONS[name]
    history, state = copy.deepcopy(example())
    mutate(history, state)
    found = check(history, state)
    assert any(line.startswith(expected) or expected in line for line in found), found
