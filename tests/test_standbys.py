"""The standby pool's size (firebox/backends/standbys.py): the configured base, raised to the
largest recent burst of starts, capped, and back to the base once bursts stop coming."""

from __future__ import annotations

from firebox.backends import standbys
from firebox.backends.standbys import StandbyTarget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_starts_sizes_the_pool_for_the_next_one():
    clock = Clock()
    target = StandbyTarget(2, 16, clock)
    assert target.size() == 2
    for _ in range(14):  # 14 starts within a second
        target.started()
        clock.now += 0.05
    assert target.size() == 2  # while it lasts, its launches have the cores
    clock.now += standbys.QUIET_SECONDS
    assert target.size() == 14
    clock.now += 60  # starts far apart are no burst, and do not shrink it
    for _ in range(3):
        target.started()
        clock.now += 30
    assert target.size() == 14
    clock.now += standbys.KEEP_SECONDS + 1
    assert target.size() == 2  # no burst that large for a while: back to the base


def test_the_pool_is_capped_and_stays_off_when_turned_off():
    clock = Clock()
    capped, off = StandbyTarget(2, 8, clock), StandbyTarget(0, 16, clock)
    for _ in range(40):
        capped.started()
        off.started()
    clock.now += standbys.QUIET_SECONDS
    assert capped.size() == 8 and off.size() == 0


def test_only_starts_close_together_count_as_one_burst():
    clock = Clock()
    target = StandbyTarget(1, 16, clock)
    for _ in range(10):  # one start every 4 s: at most 3 within BURST_SECONDS
        target.started()
        clock.now += 4
    assert target.size() == 3
