"""A model-based check of the rate-limiting queue: random add/get/done/delay/clock/shutdown sequences."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kaito.runtime.clock import FakeClock
from kaito.runtime.ratelimit import ItemExponentialFailureRateLimiter
from kaito.runtime.workqueue import RateLimitingQueue, ShutDown

ITEMS = st.sampled_from(["a", "b", "c", "d"])
DELAYS = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.5])
STEPS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5])
BASE_DELAY, MAX_DELAY = 0.5, 4.0


class QueueMachine(RuleBasedStateMachine):
    """Mirrors client-go's queue in plain sets and lists and compares every observable answer."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        limiter = ItemExponentialFailureRateLimiter[str](BASE_DELAY, MAX_DELAY)
        self.queue = RateLimitingQueue[str](limiter, clock=self.clock)
        self.ready: list[str] = []
        self.dirty: set[str] = set()
        self.held: set[str] = set()
        self.waiting: dict[str, tuple[float, int]] = {}
        self.seq = 0
        self.failures: dict[str, int] = {}
        self.shut = False
        # Items added while held: each must be handed out again after done() (no lost update).
        self.owed: set[str] = set()

    def promote(self) -> None:
        now = self.clock.now()
        due = sorted((entry, item) for item, entry in self.waiting.items() if entry[0] <= now)
        for _, item in due:
            del self.waiting[item]
            self.insert(item)

    def insert(self, item: str) -> None:
        if item in self.dirty:
            return
        self.dirty.add(item)
        if item in self.held:
            self.owed.add(item)
        else:
            self.ready.append(item)

    def model_add_after(self, item: str, delay: float) -> None:
        if self.shut:
            return
        if delay <= 0:
            self.promote()
            self.insert(item)
            return
        deadline = self.clock.now() + delay
        if item in self.waiting and self.waiting[item][0] <= deadline:
            return
        self.waiting[item] = (deadline, self.seq)
        self.seq += 1

    @rule(item=ITEMS)
    def add(self, item: str) -> None:
        self.queue.add(item)
        if not self.shut:
            self.promote()
            self.insert(item)

    @rule(item=ITEMS, delay=DELAYS)
    def add_after(self, item: str, delay: float) -> None:
        self.queue.add_after(item, delay)
        self.model_add_after(item, delay)

    @rule(item=ITEMS)
    def add_rate_limited(self, item: str) -> None:
        self.queue.add_rate_limited(item)
        failures = self.failures.get(item, 0)
        self.failures[item] = failures + 1
        self.model_add_after(item, min(BASE_DELAY * 2**failures, MAX_DELAY))

    @rule(item=ITEMS)
    def forget(self, item: str) -> None:
        self.queue.forget(item)
        self.failures.pop(item, None)

    @rule()
    def get_nowait(self) -> None:
        self.promote()
        if not self.ready and self.shut:
            try:
                self.queue.get_nowait()
            except ShutDown:
                return
            raise AssertionError("get_nowait on a shut-down, empty queue must raise ShutDown")
        got = self.queue.get_nowait()
        expected = self.ready.pop(0) if self.ready else None
        assert got == expected, f"FIFO broken: got {got!r}, model expected {expected!r}"
        if got is not None:
            assert got not in self.held, f"{got!r} handed to a second holder"
            self.held.add(got)
            self.dirty.discard(got)
            self.owed.discard(got)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(sorted(self.held)))
        self.queue.done(item)
        self.held.discard(item)
        if item in self.dirty:
            self.ready.append(item)

    @rule(dt=STEPS)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def shut_down(self) -> None:
        self.queue.shut_down()
        self.shut = True
        self.waiting.clear()

    @invariant()
    def len_matches_model(self) -> None:
        self.promote()
        assert len(self.queue) == len(self.ready)

    @invariant()
    def no_duplicates_queued(self) -> None:
        assert len(self.ready) == len(set(self.ready))
        assert not set(self.ready) & self.held

    @invariant()
    def single_holder(self) -> None:
        assert self.queue.processing_count == len(self.held)
        for item in self.held:
            assert self.queue.is_processing(item)

    @invariant()
    def no_lost_update(self) -> None:
        # An update that arrived mid-processing stays dirty until the holder's done() re-queues it.
        for item in self.owed:
            assert item in self.held or item in self.ready
            assert self.queue.is_dirty(item)

    @invariant()
    def earliest_deadline_kept(self) -> None:
        assert self.queue.waiting_count == len(self.waiting)
        for item, (deadline, _) in self.waiting.items():
            assert self.queue.ready_at(item) == deadline, f"{item!r} would be ready later than requested"

    @invariant()
    def requeue_counts_match(self) -> None:
        for item in ("a", "b", "c", "d"):
            assert self.queue.num_requeues(item) == self.failures.get(item, 0)


QueueMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestQueueMachine = QueueMachine.TestCase
