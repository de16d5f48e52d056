"""How often the coordinator asks the SuperLink for replies (issue 16: rounds in seconds).

Flower's Deployment Engine Grid (`flwr.superlink.grid.http_grid.HttpGrid`, 1.42) pushes the messages
of an exchange and then sleeps a fixed 3 s between pulls, with no setting to change it; the
Simulation Engine's InMemoryGrid pulls every 0.1 s. `PollingGrid` wraps any Grid and does the same
exchange with Flower's public Grid API (`push_messages`, then `pull_messages` until every reply is in
or the timeout passes), pulling after 0.05 s and backing off by 1.25x to at most `max_interval`
(default 0.5 s, `$CAIRN_GRID_PULL_INTERVAL`): a short exchange costs the coordinator tens of
milliseconds of waiting instead of up to 3 s, and a long training exchange costs at most two pulls
a second (each one small HTTPS request to the SuperLink).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

PULL_INTERVAL_ENV = "CAIRN_GRID_PULL_INTERVAL"
FIRST_INTERVAL = 0.05
BACKOFF = 1.25
DEFAULT_MAX_INTERVAL = 0.5


def max_interval_from_env() -> float:
    """The longest wait between two pulls: $CAIRN_GRID_PULL_INTERVAL seconds (0.01 to 60), else 0.5."""
    raw = os.environ.get(PULL_INTERVAL_ENV, "")
    if not raw:
        return DEFAULT_MAX_INTERVAL
    value = float(raw)
    if not 0.01 <= value <= 60.0:
        raise ValueError(f"${PULL_INTERVAL_ENV} must be between 0.01 and 60 seconds, got {raw!r}")
    return value


class PollingGrid:
    """A Flower Grid whose `send_and_receive` pulls replies every few tenths of a second.

    Everything else is the wrapped Grid's own (attribute access is forwarded)."""

    def __init__(self, grid, max_interval: float | None = None):
        self._grid = grid
        self.max_interval = max_interval_from_env() if max_interval is None else float(max_interval)
        self.pulls = 0  # pull requests made (for tests and benchmarks)

    def send_and_receive(self, messages: Iterable, *, timeout: float | None = None) -> list:
        """Push `messages`, then pull until every one has its reply or `timeout` seconds have passed
        (None: wait for all): Flower's `Grid.send_and_receive` contract, replies in arrival order."""
        pending = set(self._grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list = []
        wait = min(FIRST_INTERVAL, self.max_interval)
        while pending:
            got = list(self._grid.pull_messages(pending))
            self.pulls += 1
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending:
                break
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            time.sleep(wait if left is None else min(wait, left))
            wait = min(wait * BACKOFF, self.max_interval)
        return replies

    def __getattr__(self, name):
        return getattr(self._grid, name)
