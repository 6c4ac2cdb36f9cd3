"""Live journal entries fanned out to WatchEvents subscribers.

The engine publishes each entry once it is durable, in sequence order (from the journal's
writer thread, which completes futures in commit order). Publishing never blocks: each
subscriber has a bounded buffer, and a subscriber whose buffer is full is cut off (marked
overflowed and dropped) rather than slowing the engine down. Its stream then ends with a
status telling the client to resume from the last sequence it saw.

`watch` joins history and live entries without a gap or a duplicate: it catches up from the
journal, subscribes, reads the journal once more (anything committed before the subscription
is there), then drains the buffer, skipping sequences it has already sent.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator

from dispatch_core.durability.journal import Entry, Journal

#: Entries a subscriber may fall behind by before its stream is ended.
DEFAULT_BUFFER = 10_000


class SubscriberOverflowError(Exception):
    """A subscriber fell more than its buffer behind; it must reconnect."""

    def __init__(self, last_sent: int, buffer: int) -> None:
        self.last_sent = last_sent
        super().__init__(
            f"the stream fell more than {buffer} events behind and was ended so the engine"
            f" never waits for a slow consumer; reconnect with from_sequence={last_sent}"
            " (the last sequence received) to resume without a gap"
        )


class _Subscriber:
    __slots__ = ("buffer", "capacity", "cond", "overflowed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer: collections.deque[Entry] = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.overflowed = False


class EventBus:
    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self.buffer = buffer
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._listeners: tuple[Callable[[Entry], None], ...] = ()
        self._closed = False

    def listen(self, callback: Callable[[Entry], None]) -> None:
        """Calls `callback` with every entry published from now on, on the journal's writer
        thread: it must be quick and must not raise (auto-dispatch only sets an event)."""
        with self._lock:
            self._listeners = (*self._listeners, callback)

    def publish(self, entry: Entry) -> None:
        """Hand `entry` to every subscriber; O(subscribers), never blocks on one."""
        with self._lock:
            subscribers = tuple(self._subscribers)
        for listener in self._listeners:
            listener(entry)
        for sub in subscribers:
            with sub.cond:
                if sub.overflowed:
                    continue
                if len(sub.buffer) >= sub.capacity:
                    sub.overflowed = True
                    sub.buffer.clear()
                    with self._lock:
                        self._subscribers.discard(sub)
                else:
                    sub.buffer.append(entry)
                sub.cond.notify()

    def close(self) -> None:
        """Wake every subscriber so their streams end (server shutdown)."""
        with self._lock:
            self._closed = True
            subscribers = tuple(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            with sub.cond:
                sub.cond.notify()

    def watch(
        self,
        journal: Journal,
        after: int,
        *,
        active: Callable[[], bool],
        poll_s: float = 0.5,
    ) -> Iterator[Entry]:
        """Entries with sequence > `after`: history, then live, until `active()` is false.

        Raises JournalCompactedError (before yielding anything) when `after` is older than
        the journal keeps, and SubscriberOverflowError when the consumer fell behind.
        """
        last = after
        # Catch up without a subscription first: a long history read must not count against
        # the live buffer.
        while True:
            before = last
            for entry in journal.entries_since(last):
                yield entry
                last = entry.sequence
            if last == before:
                break
        sub = _Subscriber(self.buffer)
        with self._lock:
            if self._closed:
                return
            self._subscribers.add(sub)
        try:
            # Everything durable before the subscription existed is in the journal now.
            for entry in journal.entries_since(last):
                yield entry
                last = entry.sequence
            while active():
                with sub.cond:
                    if not sub.buffer and not sub.overflowed:
                        sub.cond.wait(poll_s)
                    if sub.overflowed:
                        raise SubscriberOverflowError(last, sub.capacity)
                    pending = list(sub.buffer)
                    sub.buffer.clear()
                if self._closed and not pending:
                    return
                for entry in pending:
                    if entry.sequence > last:
                        yield entry
                        last = entry.sequence
        finally:
            with self._lock:
                self._subscribers.discard(sub)
