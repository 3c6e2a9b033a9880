"""The machine's state at the start of a run: what was busy, named, and nothing guessed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from toolkit.busy import busy_text, state


def test_a_busy_process_that_is_not_ours_is_named():
    # a busy loop orphaned by its shell, as another user's job would be: not our child
    subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time; end = time.time() + 8\n"
                    "while time.time() < end: pass' >/dev/null 2>&1 &"], check=True)
    time.sleep(0.5)
    looping = [p for p in psutil.process_iter(["cmdline"])
               if "end = time.time() + 8" in " ".join(p.info["cmdline"] or [])]
    try:
        found = state(sample_s=1.0)
        assert looping and any(p["pid"] == looping[0].pid and p["cpu_percent"] >= 20
                               for p in found["busy"]), found
        assert len(found["load"]) == 3 and found["cores"] >= 1
        assert "cpu_mhz" in found or found["cpu_frequency"] == "not readable here"
        assert f"pid {looping[0].pid}" in busy_text(found)
    finally:
        for process in looping:
            process.kill()


def test_busy_text_names_load_processes_and_gpu_users_and_is_quiet_otherwise():
    quiet = {"cores": 2, "load": [0.2, 0.3, 0.3], "busy": []}
    assert busy_text(quiet) is None and busy_text(None) is None
    loaded = {"cores": 2, "load": [1.9, 1.0, 0.5], "gpu_processes": ["123, python, 900 MiB"],
              "busy": [{"pid": 7, "name": "make", "cpu_percent": 98}]}
    assert busy_text(loaded) == ("load average 1.9 on 2 cores; busy: make (pid 7, 98% of a "
                                 "core); on the GPU: 123, python, 900 MiB")


def test_a_report_names_what_was_busy_where_rounds_disagree():
    from toolkit.report.summary import summarise
    from toolkit.results import Record
    from toolkit.stats import Stats

    records = [Record("m", "onnx", "infer", runtime="onnxruntime", variant="run",
                      provider="cpu", batch_size=1, round=r, stats=Stats.from_ms([p50] * 5))
               for r, p50 in enumerate((1.0, 1.0, 1.6, 1.0), start=1)]
    [summary] = summarise(records, [1], ["host"] * len(records), busy={"host": "busy: make"})
    said = [w for option in summary.options for w in option.warnings]
    assert any("rounds disagree" in w and "(when the run started: busy: make)" in w
               for w in said), said


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no way to pin a process "
                    "to a core on this OS")
def test_core_speed_reads_every_core_and_a_busy_core_reads_slower():
    """Two processes pinned to the first core leave its reading about a third of what it read
    just before. The tests beside this one load the cores too, and move: three tries."""
    from toolkit.busy import core_speed, usable_cores

    first = usable_cores()[0]
    hog = ("import os, time\n"
           f"os.sched_setaffinity(0, {{{first}}})\nend = time.time() + 2\n"
           "while time.time() < end: pass")
    tries = []
    for _ in range(3):
        alone = core_speed(0.25)
        assert alone is not None and len(alone) == len(usable_cores())
        assert all(v > 0 for v in alone)
        hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
        try:
            time.sleep(0.2)
            shared = core_speed(0.25)
        finally:
            for process in hogs:
                process.kill()
                process.wait()
        assert shared is not None
        tries.append((alone, shared))
        if shared[0] < 0.7 * alone[0]:
            break
    else:
        raise AssertionError(f"the hogged core did not read slower: {tries}")
    assert core_speed(0) is None


def test_unsteady_text_says_so_only_when_over_a_tenth_of_the_readings_ran_slow():
    from toolkit.busy import unsteady_text

    steady = [[14.0, 13.6], [14.2, 13.9], [13.5, 14.1], [14.3, 11.0], [14.0, 14.0]] * 2
    assert unsteady_text(steady) is None  # 2 slow of 20
    assert unsteady_text([[14.0, 7.1], None, [13.9, 14.2]]) == (
        "the cores were not steady: 1 of 4 readings (a 0.25 s loop on each core, before and "
        "after each option) ran over 15% below its fastest (at worst 7.1 against 14.2 M "
        "steps/s); a "
        "peak measured in such a spell reads low, and steal need not show it: run it again "
        "where the readings are steady")
    assert unsteady_text([None, [14.0]]) is None
    # each core against itself: a fast and a slow core, each steady, are steady
    assert unsteady_text([[14.0, 7.0], [13.9, 7.1], [14.1, 6.9]]) is None


def test_the_fastest_reading_is_kept_per_core_and_a_run_slow_throughout_is_said(tmp_path):
    from toolkit.busy import fastest_of, fastest_seen, unsteady_text

    cache = tmp_path / "core_speed.json"
    assert fastest_seen(None, 0.25, cache) is None
    assert fastest_seen([13.0, 14.2], 0.25, cache) == [13.0, 14.2]
    assert fastest_seen([13.5, 7.2], 0.25, cache) == [13.5, 14.2]  # a slower core lowers nothing
    assert fastest_seen([14.0, 14.0], 0.02, cache) is None  # a shorter reading is not kept
    assert fastest_seen(None, 0.25, cache) == [13.5, 14.2]
    assert fastest_of([[1.0, 5.0], None, [3.0, 2.0]]) == [3.0, 5.0] and fastest_of([]) is None
    # every reading of a run at half speed agrees with the others: against the machine's
    # fastest, the run was slow throughout
    half = [[7.0, 7.2], [7.1, 6.9]]
    assert unsteady_text(half) is None
    said = unsteady_text(half, best=[13.5, 14.2])
    assert said and "4 of 4 readings" in said and "its fastest on this machine" in said
