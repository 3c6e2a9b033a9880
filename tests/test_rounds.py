"""Serving peaks over interleaved rounds: the machine's effect per round out, medians with
intervals, and an order claimed only where the intervals settle it."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.rounds import normalised, order_of, paired_ratio, peaks_over_rounds

TRUE = {f"option-{i}": 10_000 * 1.3 ** i for i in range(6)}  # peaks 1.3x apart


def simulated(seed: int, speeds=(1.0, 0.5, 1.0), noise: float = 0.05,
              missing: tuple[tuple[str, int], ...] = ()) -> dict[str, dict[int, float | None]]:
    """Each option's peak per round: its true peak times the machine's speed in that round
    (the whole round alike) times lognormal noise; `missing`: rounds that sustained none."""
    rng = np.random.default_rng(seed)
    return {option: {r: None if (option, r) in missing else
                     peak * speed * float(rng.lognormal(0, noise))
                     for r, speed in enumerate(speeds, start=1)}
            for option, peak in TRUE.items()}


@pytest.mark.parametrize("seed", range(20))
def test_a_round_at_half_speed_does_not_reorder_options_1_3x_apart(seed):
    result = peaks_over_rounds(simulated(seed))
    ranked = [o.option for o in result.ranked()]
    assert ranked == sorted(TRUE, key=lambda o: -TRUE[o])
    # the slow round is read off the options, not left in them
    assert result.effects[2] == pytest.approx(0.5 / ((1 * 0.5 * 1) ** (1 / 3)), rel=0.1)
    for option in result.options:
        assert option.kind == "interval"
        assert option.low < option.median < option.high
        # the figure is the option at the run's mean speed (0.79 here): within its noise
        assert option.median == pytest.approx(TRUE[option.option] * 0.5 ** (1 / 3), rel=0.12)


def paired(seed: int, gain: float, noise: float = 0.08, speeds=(1.0, 0.5, 1.0)):
    """advise's confirmations: a pick `gain` times the best default, an unbatched default at a
    third of it, in rounds at `speeds`, each search with lognormal `noise`."""
    rng = np.random.default_rng(seed)
    true = {"pick": 30_000.0 * gain, "default": 30_000.0, "unbatched": 10_000.0,
            "other": 25_000.0}
    peaks = {name: {r: peak * speed * float(rng.lognormal(0, noise))
                    for r, speed in enumerate(speeds, start=1)}
             for name, peak in true.items()}
    return peaks, peaks_over_rounds(peaks).noise


def test_the_paired_ratio_covers_the_true_gain_and_a_half_speed_round_does_not_move_it():
    """A pick 1.3x the default, 8% noise a search, round 2 at half speed: over 200 seeds the
    interval covers 1.3 in 90% of them or more (93% over 1,000) and calls the pick faster in
    most; a pick no faster is called faster in about 3% (one-sided, nominally 2.5%)."""
    covered = faster = 0
    for seed in range(200):
        peaks, noise = paired(seed, 1.3)
        ratio = paired_ratio(peaks["pick"], peaks["default"], noise)
        assert ratio is not None and ratio.rounds == 3 and ratio.kind == "interval"
        covered += ratio.low <= 1.3 <= ratio.high
        faster += ratio.faster
    assert covered >= 180 and faster >= 150, (covered, faster)
    alike = sum(paired_ratio(p["pick"], p["default"], n).faster
                for p, n in (paired(seed, 1.0) for seed in range(200)))
    assert alike <= 12, alike
    # the machine's speed in a round multiplies both peaks of that round: the ratio is the same
    peaks, noise = paired(7, 1.3, speeds=(1.0, 1.0, 1.0))
    slowed = {name: {r: p * (0.5 if r == 2 else 1.0) for r, p in rounds.items()}
              for name, rounds in peaks.items()}
    steady = paired_ratio(peaks["pick"], peaks["default"], noise)
    halved = paired_ratio(slowed["pick"], slowed["default"], noise)
    assert steady is not None and halved is not None
    assert halved.ratio == pytest.approx(steady.ratio)


def test_a_paired_ratio_uses_the_rounds_both_sustained_and_says_one_round_is_one():
    both = paired_ratio({1: 20e3, 2: None, 3: 22e3}, {1: 10e3, 2: 12e3, 3: None})
    assert both is not None and both.kind == "one round" and both.ratio == pytest.approx(2.0)
    assert not both.faster and "one round" in both.text() and both.over == "over 1 paired round"
    assert paired_ratio({1: 20e3}, {2: 10e3}) is None
    # two rounds and no pooled variation: Student's t on their own, wide
    alone = paired_ratio({1: 20e3, 2: 24e3}, {1: 10e3, 2: 10e3})
    assert alone is not None and alone.low < 2.0 < alone.high and alone.high / alone.low > 2


def test_one_option_alone_keeps_its_own_variation():
    """The machine's effect in a round is read off two options or more: one option's rounds
    alone are its own variation, which must stay in its range, not be divided out."""
    result = peaks_over_rounds({"only": {1: 10e3, 2: 15e3, 3: 12e3}})
    (only,) = result.options
    assert only.kind == "range" and only.low == pytest.approx(10e3)
    assert only.high == pytest.approx(15e3)


def test_a_machine_that_speeds_up_across_the_run_is_taken_out_of_each_interval():
    """The machine at 0.5, 0.75 and 1.0 of its speed in rounds 1-3: each option's raw peaks
    range over 1.5x or more, its interval with the rounds' effect out far less."""
    result = peaks_over_rounds(simulated(3, speeds=(0.5, 0.75, 1.0)))
    for option in result.options:
        raw = [p for p in option.peaks.values() if p]
        assert max(raw) / min(raw) > 1.5
        assert option.high / option.low < 1.4


def test_an_order_is_claimed_only_where_the_intervals_do_not_meet():
    close = {"a": {1: 10_000.0, 2: 10_400.0, 3: 9_900.0},
             "b": {1: 10_200.0, 2: 10_100.0, 3: 10_300.0},
             "c": {1: 20_000.0, 2: 21_000.0, 3: 19_500.0},
             "d": {1: 5_000.0, 2: 5_100.0, 3: 4_900.0}}
    result = peaks_over_rounds(close)
    pairs = order_of(result.options)
    assert [(a, b) for a, b, _ in pairs] == [("c", "b"), ("b", "a"), ("a", "d")]
    assert [settled for *_, settled in pairs] == [True, False, True]
    b = next(o for o in result.options if o.option == "b")
    assert [o.option for o in result.unsettled_with(b)] == ["a"]


def test_a_round_that_sustained_nothing_is_left_out_of_that_option_only():
    result = peaks_over_rounds(simulated(1, missing=(("option-0", 2),)))
    first = next(o for o in result.options if o.option == "option-0")
    assert first.peaks[2] is None and sorted(first.adjusted) == [1, 3]
    assert first.kind == "interval" and first.sustained_rounds == 2
    assert [o.option for o in result.ranked()][-1] == "option-0"


def test_one_round_gives_its_peak_and_claims_no_order():
    result = peaks_over_rounds({"a": {1: 100.0}, "b": {1: 300.0}})
    assert [o.kind for o in result.options] == ["one round", "one round"]
    assert [o.median for o in result.options] == [100.0, 300.0]
    assert [settled for *_, settled in order_of(result.options)] == [False]


def test_nothing_sustained_has_no_figure():
    result = peaks_over_rounds({"a": {1: None, 2: None}, "b": {1: 50.0, 2: 55.0}})
    a = next(o for o in result.options if o.option == "a")
    assert a.median is None and a.kind == "none" and result.ranked()[0].option == "b"


def test_normalised_figures_drop_the_machines_speed():
    fast = normalised({"a": 200.0, "b": 100.0, "c": 50.0})
    slow = normalised({"a": 100.0, "b": 50.0, "c": 25.0})
    assert fast == pytest.approx(slow) and fast["b"] == pytest.approx(1.0)


def _record(variant: str, round_: int, peak: float | None, slow: bool = False):
    from toolkit.results import Record

    reading = [7.0, 14.0] if slow else [14.0, 14.0]
    info = {"scenario": "server", "p99_bound_ms": 5.0, "peak_qps": peak,
            "peak_kind": "sustained" if peak else "none", "valid": bool(peak),
            "latency_ms": {"p50": 1.0, "p99": 4.0}, "points": [{"valid": True}],
            "workers": 2, "threads_per_worker": 1, "sessions": "one shared",
            "core_speed": {"before": reading, "after": [14.0, 14.0], "seconds": 0.25,
                           "fastest_seen": [14.0, 14.0]}}
    return Record("mlp", "onnx", "scenario", runtime="onnxruntime", variant=variant,
                  provider="cpu", batch_size=1, round=round_, seconds=10.0, info=info)


def test_the_report_gives_one_row_an_option_with_its_rounds_and_says_what_is_not_settled():
    from toolkit.report.loadgen import (
        Served,
        combine_rounds,
        loadgen_notes,
        loadgen_tables,
        served_label,
        sustained_picks,
    )

    peaks = {"shared": (20_000, 10_000, 21_000), "per-worker": (21_000, 10_500, 20_000),
             "processes": (8_000, 4_100, 8_200)}
    records = [_record(v, r + 1, p, slow=(r == 1 and v == "shared"))
               for r in range(3) for v, ps in peaks.items() for p in [ps[r]]]
    served = combine_rounds([Served(served_label(r), r) for r in records])
    assert len(served) == 3 and all(len(s.rounds) == 3 for s in served)
    by = {s.record.variant: s for s in served}
    # round 2 ran at half speed for every option: taken out, not a third of each figure
    assert by["shared"].peak_qps == pytest.approx(20_000 * 0.79, rel=0.1)
    assert by["shared"].slow_rounds == (2,) and by["shared"].sustained
    (table,) = loadgen_tables(served)
    assert "each round" in table.columns and "[95% interval]" in table.columns[1]
    cells = dict((row[0], row) for row, _ in table.rows)
    assert cells[by["shared"].label][2].count("/") == 2 and "*" in cells[by["shared"].label][2]
    (pick,) = sustained_picks(served)
    assert pick.pick is not None and pick.pick.record.variant in ("shared", "per-worker")
    assert "not ranked above" in pick.line and "processes" not in pick.line.split(";")[-1]
    assert any(n.startswith("served in 3 rounds") for n in loadgen_notes(served))


def test_an_option_sustained_in_one_round_of_three_is_not_picked():
    from toolkit.report.loadgen import Served, combine_rounds, served_label, sustained_picks

    records = [_record("shared", r, p) for r, p in ((1, 9_000), (2, None), (3, None))]
    records += [_record("processes", r, p) for r, p in ((1, 5_000), (2, 5_200), (3, 4_900))]
    served = combine_rounds([Served(served_label(r), r) for r in records])
    (pick,) = sustained_picks(served)
    assert pick.pick is not None and pick.pick.record.variant == "processes"
