"""The SSE tail of one subscriber: catch up from its start, then follow the head.

Messages are encoded here, once, as bytes: an event is `id: <position>` and one line of
JSON (never an `event:` field); `caught-up` once the backlog is delivered; `checkpoint`
when a filtered subscription has scanned past its last match. Each subscriber keeps its
own cursor and one page, so a slow reader costs one page, never a queue. A tail that
has sent nothing for `ping_seconds` sends a `: ping` comment (proxies keep the
connection), from the same task: a subscriber is one task.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.domain.types import LogFilter
from app.live.broadcaster import Broadcaster
from app.live.wire import message

# How often an idle filtered tail looks whether its cursor has moved (to checkpoint).
IDLE_RECHECK_SECONDS = 1.0


PING = b": ping\n\n"


@dataclass(frozen=True, slots=True)
class TailOptions:
    page_size: int
    retry_ms: int
    checkpoint_seconds: float
    ping_seconds: float = math.inf  # a `: ping` comment after this long with nothing sent


async def tail(
    broadcaster: Broadcaster, start: int, where: LogFilter, options: TailOptions
) -> AsyncIterator[bytes]:
    yield f"retry: {options.retry_ms}\n\n".encode()
    cursor = start
    last_id = start  # the newest id the client has, from an event or a checkpoint
    caught_up = False
    filtered = not where.is_empty
    checkpointed_at = sent_at = time.monotonic()
    broadcaster.subscribers += 1
    try:
        while not broadcaster.closing:
            # Catch-up reads the database, so caught-up comes after every event
            # acknowledged before the subscription; at the head the cache serves.
            read = broadcaster.read if caught_up else broadcaster.read_fresh
            page = await read(cursor, options.page_size, where)
            if page.events:
                # One chunk per page: one write (and one syscall) per subscriber for
                # all the events a wake-up brings, not one per event.
                yield b"".join(map(broadcaster.message_for, page.events))
                sent_at = time.monotonic()
                last_id = page.events[-1].position
            cursor = max(cursor, page.next_after)
            more = len(page.events) == options.page_size
            if not more and not caught_up:
                caught_up = True
                last_id = cursor
                checkpointed_at = time.monotonic()
                yield message("caught-up", cursor, f'{{"position":{cursor},"head":{page.head}}}')
                sent_at = time.monotonic()
            elif caught_up and filtered and cursor > last_id:
                due = checkpointed_at + options.checkpoint_seconds - time.monotonic()
                if due <= 0:
                    last_id = cursor
                    checkpointed_at = time.monotonic()
                    yield message("checkpoint", cursor, f'{{"position":{cursor}}}')
                    sent_at = checkpointed_at
            if not more and time.monotonic() - sent_at >= options.ping_seconds:
                yield PING
                sent_at = time.monotonic()
            if not more:
                # The broadcaster wakes us on a match (or on shutdown); non-matching
                # events only move the cursor it hands back. A filtered tail also wakes
                # on a timer: when a checkpoint is due, or (idle) every few seconds
                # once the cursor has moved, to send one.
                wait, until_moved = math.inf, False
                if caught_up and filtered:
                    if cursor > last_id:
                        wait = max(
                            checkpointed_at + options.checkpoint_seconds - time.monotonic(), 0
                        )
                    else:
                        wait = max(options.checkpoint_seconds, IDLE_RECHECK_SECONDS)
                        until_moved = True
                ping = max(sent_at + options.ping_seconds - time.monotonic(), 0)
                if ping < wait:
                    wait, until_moved = ping, False
                cursor, _ = await broadcaster.wait_for(cursor, where, wait, until_moved)
    finally:
        broadcaster.subscribers -= 1
