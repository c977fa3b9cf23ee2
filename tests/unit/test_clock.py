"""The coarse clock: a late tick widens the slack deadlines are checked with, for a while."""

from __future__ import annotations

import pytest

from fastgate import clock


@pytest.fixture
def fake_time(monkeypatch):
    t = [1000.0]
    monkeypatch.setattr(clock.time, "monotonic", lambda: t[0])
    clock.reset()
    yield t
    clock.reset()


def test_normal_ticks_keep_the_slack_at_one_tick(fake_time):
    for _ in range(10):
        fake_time[0] += clock.TICK_SECONDS
        clock.tick()
    assert clock.CLOCK.now == 1000.0 + 10 * clock.TICK_SECONDS
    assert clock.CLOCK.slack == pytest.approx(clock.TICK_SECONDS)


def test_a_late_tick_widens_the_slack_until_it_leaves_the_window(fake_time):
    # A deadline armed just before a late tick was armed from a clock this stale.
    fake_time[0] += 1.5
    clock.tick()
    assert clock.CLOCK.slack == pytest.approx(1.5)
    armed_from = clock.CLOCK.now - 1.5  # what clock.CLOCK.now said when the deadline was armed
    deadline = armed_from + 1.0
    # The checker's comparison never lets it fire before 1 s of real time has passed.
    real_arm_time = clock.CLOCK.now  # at worst, armed just before this tick
    for _ in range(63):
        fake_time[0] += clock.TICK_SECONDS
        clock.tick()
        if clock.CLOCK.now - clock.CLOCK.slack > deadline:
            assert clock.CLOCK.now - real_arm_time >= 1.0
    assert clock.CLOCK.slack == pytest.approx(1.5)
    fake_time[0] += clock.TICK_SECONDS
    clock.tick()
    assert clock.CLOCK.slack == pytest.approx(clock.TICK_SECONDS)


def test_reset_forgets_start_up_time(fake_time):
    fake_time[0] += 5.0  # importing, loading APIs, connecting the store
    clock.reset()
    assert clock.CLOCK.now == fake_time[0]
    fake_time[0] += clock.TICK_SECONDS
    clock.tick()
    assert clock.CLOCK.slack == pytest.approx(clock.TICK_SECONDS)
