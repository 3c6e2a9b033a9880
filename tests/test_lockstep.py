"""Searches side by side: turns round the searches still going, and what that buys on a machine
whose speed changes within a round."""

from __future__ import annotations

import threading
import time

import pytest

from toolkit.lockstep import Turns
from toolkit.scenarios import LoadGenResult, search_peak


def take_turns(turns: Turns, plan: dict[str, int], fail: str | None = None) -> None:
    """Each member takes its number of turns in a thread of its own; `fail` raises after its
    first turn."""
    raised: list[str] = []

    def member(name: str, count: int) -> None:
        try:
            with turns.member(name):
                for n in range(count):
                    with turns.turn(name):
                        time.sleep(0.002)  # a turn's work: the others must wait it out
                    if name == fail and n == 0:
                        raise RuntimeError("a search that raises")
        except RuntimeError:
            raised.append(name)

    threads = [threading.Thread(target=member, args=item, daemon=True) for item in plan.items()]
    for thread in threads[::-1]:  # started out of order: the turns still go in order
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a member waited for a turn forever"
    assert raised == ([fail] if fail else [])


def test_turns_go_round_the_members_in_order_one_at_a_time():
    turns = Turns(["a", "b", "c"])
    take_turns(turns, {"a": 3, "b": 3, "c": 3})
    assert turns.taken == ["a", "b", "c"] * 3
    assert turns.members == ()
    assert all(turns.held[m] >= 3 * 0.002 for m in "abc")  # each one's own turns, counted


def test_a_member_that_ends_or_raises_leaves_the_rotation_and_the_others_go_on():
    turns = Turns(["a", "b", "c"])
    take_turns(turns, {"a": 1, "b": 4, "c": 2})
    assert turns.taken == ["a", "b", "c", "b", "c", "b", "b"]
    raising = Turns(["a", "b", "c"])
    take_turns(raising, {"a": 3, "b": 3, "c": 3}, fail="b")
    assert raising.taken == ["a", "b", "c", "a", "c", "a", "c"]


def test_a_name_given_twice_or_unknown_is_refused():
    with pytest.raises(ValueError, match="named twice"):
        Turns(["a", "a"])
    turns = Turns(["a"])
    with pytest.raises(ValueError, match="not in the rotation"), turns.turn("z"):
        pass


class Machine:
    """A server whose speed halves after `fast_runs` LoadGen runs (of any option): a slow
    spell that begins within a round. An option holds a rate up to its capacity times the
    machine's speed at the moment of the run."""

    def __init__(self, fast_runs: int) -> None:
        self.fast_runs = fast_runs
        self.runs = 0

    def run_at(self, capacity: float):
        def run(rate: float) -> LoadGenResult:
            speed = 1.0 if self.runs < self.fast_runs else 0.5
            self.runs += 1
            valid = rate <= capacity * speed
            return LoadGenResult("server", valid, "" if valid else "p99 over the bound",
                                 {"p50": 1.0, "p99": 1.0 if valid else 9.0},
                                 scheduled_qps=rate, completed_qps=rate)
        return run


CAPACITY = {"slower": 100_000.0, "faster": 130_000.0}  # the faster option holds 1.3x


def peaks_one_after_another(fast_runs: int) -> dict[str, float]:
    machine = Machine(fast_runs)
    return {name: search_peak(machine.run_at(c), c / 2, bisect_to=0.05).peak_qps
            for name, c in CAPACITY.items()}


def peaks_side_by_side(fast_runs: int) -> dict[str, float]:
    machine = Machine(fast_runs)
    turns = Turns(list(CAPACITY))
    found: dict[str, float] = {}

    def search(name: str) -> None:
        run = machine.run_at(CAPACITY[name])

        def in_turn(rate: float) -> LoadGenResult:
            with turns.turn(name):
                return run(rate)

        with turns.member(name):
            found[name] = search_peak(in_turn, CAPACITY[name] / 2, bisect_to=0.05).peak_qps

    threads = [threading.Thread(target=search, args=(n,), daemon=True) for n in CAPACITY]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return found


@pytest.mark.parametrize("later", [0, 2, 4])
def test_a_spell_within_a_round_meets_searches_side_by_side_alike(later):
    """One after another, the machine halving its speed partway through the round (as the
    second search begins, or a few runs into it) leaves the option searched second reading
    below the one 1.3x slower; side by side, both searches meet the spell at the same step
    and keep their ratio."""
    one_search = len(search_peak(Machine(10**6).run_at(1.0), 0.5, bisect_to=0.05).points)
    fast_runs = one_search + later
    apart = peaks_one_after_another(fast_runs)
    assert apart["faster"] < apart["slower"]  # what the spell does to searches in turn
    together = peaks_side_by_side(fast_runs)
    assert together["faster"] / together["slower"] == pytest.approx(1.3, rel=0.1)
