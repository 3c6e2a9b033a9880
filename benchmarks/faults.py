"""Faults on purpose: each injected into a real `deploybench` command, and what happened.

Every fault runs the real console script on tiny inputs (a one-Relu ONNX model, a suite of two
scikit-learn workloads) in a folder of its own, injects the fault (a signal to the driver or
to a measuring child, a file that cannot grow, a memory limit, a cluster node killed, a file
changed in the results folder, two runs at once), then checks what must hold: an exit code,
one `error:` line and no traceback, a whole results.json, no process left behind, and
`--resume` finishing with nothing measured twice. Prints a table: fault, what must happen,
what happened, held or not (or why it could not be injected on this machine).

    python benchmarks/faults.py [--only NAME[,NAME]] [--keep DIR]

The memory fault needs a memory cgroup this user can make (root, cgroup v1 or v2); the node
fault needs root, `unshare` and Ray (`deploybench[cluster]`), as tests/test_cluster.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.model_files

from tests.model_files import onnx_model, relu  # noqa: E402

CLI = [sys.executable, "-m", "toolkit.cli"]
SUITE = """name = "faults"
workloads = ["sklearn/seed-linreg", "sklearn/digits-logreg"]
batch_sizes = [1, 4]
providers = ["cpu"]
threads = 1
rounds = 2

[timing]
warmup = 1
min_iterations = 3
min_seconds = 0.0
max_seconds = 0.2
"""
STEPS = 10  # the suite's steps: 2 builds and 2 rounds of 2 cases each per workload


@dataclass(frozen=True)
class Fault:
    name: str
    must: str  # what must happen
    inject: Callable[[Path], tuple[bool | None, str]]  # (held, what happened), in a folder
    # of its own; held None: it could not be injected here, and why


def cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def one_error_line(proc: subprocess.CompletedProcess) -> str | None:
    """Why `proc` did not end in exactly one `error:` line and no traceback (None: it did)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if "Traceback" in proc.stderr:
        return "a traceback: " + proc.stderr.strip().splitlines()[-1][:160]
    if len(lines) != 1:
        return f"{len(lines)} error lines"
    return None


def records(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["records"]


def steps_done(out: Path) -> int:
    try:
        return len({r["step"] for r in records(out)})
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(what: Callable[[], bool], seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return False


def left_in(out: Path) -> list[int]:
    """The processes still working in `out` (a run's children run with it as their folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() == out.resolve():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def measuring(pid: int, driver: int) -> bool:
    """Whether `pid` is a measuring child: one spawned as `toolkit.worker`, or one forked from
    a fork server (the driver's grandchild), not the server itself."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return "toolkit.worker" in command or (parent != driver and "toolkit.forkserver" in command)


def every_step_once(out: Path) -> str | None:
    counts = Counter(r["step"] for r in records(out) if r["phase"] in ("train", "load"))
    twice = [step for step, n in counts.items() if n > 1]
    if len(counts) != STEPS or twice:
        return f"{len(counts)} of {STEPS} steps; made twice: {twice}"
    return None


def driver_killed(folder: Path) -> tuple[bool, str]:
    suite, out = folder / "suite.toml", folder / "run"
    suite.write_text(SUITE)
    proc = subprocess.Popen([*CLI, "run", "--suite", str(suite), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: steps_done(out) >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = steps_done(out)
    orphans = left_in(out) if not wait_for(lambda: not left_in(out), 15) else []
    resumed = cli("run", "--resume", str(out))
    twice = every_step_once(out) if resumed.returncode == 0 else None
    held = 0 < kept < STEPS and not orphans and resumed.returncode == 0 and twice is None
    return held, (f"{kept} steps kept, {len(orphans)} processes left; --resume exit "
                  f"{resumed.returncode}" + (f", {twice}" if twice else ", every step once"))


def child_killed(folder: Path) -> tuple[bool, str]:
    suite, out = folder / "suite.toml", folder / "run"
    suite.write_text(SUITE)
    proc = subprocess.Popen([*CLI, "run", "--suite", str(suite), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for pid in left_in(out):
            if measuring(pid, proc.pid):
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=600)
    failed = [r for r in records(out) if r["status"] == "failed"
              and "SIGKILL" in (r.get("reason") or "")]
    ok = [r for r in records(out) if r["status"] == "ok"]
    warned = "warning: failed:" in stderr
    held = killed is not None and proc.returncode == 0 and bool(failed) and bool(ok) and warned
    return held, (f"killed child {killed}; exit {proc.returncode}"
                  f"{', failures warned' if warned else ''}; {len(failed)} records "
                  f"failed naming SIGKILL, {len(ok)} ok" + (
                      f" ({failed[0]['reason'][:60]}...)" if failed else ""))


def terminated(command: str) -> Callable[[Path], tuple[bool, str]]:
    def inject(folder: Path) -> tuple[bool, str]:
        model, out = relu(folder / "relu.onnx"), folder / command
        args = {"loadgen": ["loadgen", str(model), "--scenario", "server", "--p99-ms", "5",
                            "--rounds", "2", "--out", str(out)],
                "advise": ["advise", str(model), "--p99-ms", "5", "--recipes", "fp32",
                           "--threads", "1", "--budget", "2m", "--no-controls",
                           "--out", str(out)]}[command]
        proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started = wait_for(lambda: any(out.rglob("results.json")) and steps_done(
            next(out.rglob("results.json")).parent) >= 1, 300)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        orphans = left_in(out) if not wait_for(lambda: not left_in(out), 15) else []
        resumed = cli(command, "--resume", str(out), timeout=900)
        finished = (out / "advice.json").is_file() if command == "advise" else (
            resumed.returncode == 0)
        held = (started and proc.returncode == 130 and "--resume" in stderr and not orphans
                and finished and "Traceback" not in resumed.stderr)
        return held, (f"exit {proc.returncode} ({'says' if '--resume' in stderr else 'no'} "
                      f"--resume), {len(orphans)} processes left; --resume exit "
                      f"{resumed.returncode}" + (", advice.json written" if command ==
                                                  "advise" and finished else ""))
    return inject


def _no_bigger_than(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def disk_full(folder: Path) -> tuple[bool, str]:
    """Files that cannot grow past 20 kB (the kernel's RLIMIT_FSIZE: what a full disk does to a
    write, without one), then --resume without the limit."""
    model, out = relu(folder / "relu.onnx"), folder / "bench"
    full = subprocess.run([*CLI, "bench", str(model), "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=_no_bigger_than(20_000))
    why = one_error_line(full)
    whole = True
    try:
        records(out)
    except FileNotFoundError:
        pass
    except ValueError:
        whole = False
    resumed = cli("bench", "--resume", str(out)) if (out / "results.json").is_file() else None
    held = full.returncode == 2 and why is None and whole and (
        resumed is None or resumed.returncode == 0)
    line = next((x for x in full.stderr.splitlines() if x.startswith("error:")), "")
    return held, (f"exit {full.returncode}; {why or line[:110]}; results.json "
                  f"{'whole' if whole else 'broken'}" + (
                      f"; --resume exit {resumed.returncode}" if resumed else ""))


def two_at_once(folder: Path) -> tuple[bool, str]:
    model, history = relu(folder / "relu.onnx"), folder / "history.sqlite"
    procs = [subprocess.Popen([*CLI, "bench", str(model), "--rounds", "1", "--history",
                               str(history), "--out", str(folder / f"run{n}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2)]
    codes = [p.wait(timeout=600) for p in procs]
    listed = cli("history", "--history", str(history))
    runs = listed.stdout.count("bench")
    held = codes == [0, 0] and listed.returncode == 0 and runs >= 2
    return held, f"exits {codes}; the history lists {runs} bench runs"


def tampered(folder: Path) -> tuple[bool, str]:
    suite, out = folder / "suite.toml", folder / "run"
    suite.write_text(SUITE)
    proc = subprocess.Popen([*CLI, "run", "--suite", str(suite), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: steps_done(out) >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    built = [r["info"]["artifact"] for r in records(out)
             if r["phase"] == "train" and r["status"] == "ok"]
    if not built:
        return False, "no model was built before the kill"
    marker = folder / "the-pickle-ran"
    Path(built[0]).write_bytes(_planted(marker))
    resumed = cli("run", "--resume", str(out))
    why = one_error_line(resumed)
    held = resumed.returncode == 2 and why is None and not marker.exists()
    line = next((x for x in resumed.stderr.splitlines() if x.startswith("error:")), "")
    return held, (f"exit {resumed.returncode}; the planted pickle "
                  f"{'ran' if marker.exists() else 'did not run'}; {why or line[:110]}")


def _planted(marker: Path) -> bytes:
    import pickle

    class Planted:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return pickle.dumps(Planted())


def _memory_cgroup(folder: Path, limit: int) -> tuple[Path | None, str]:
    """A memory cgroup of `limit` bytes for this fault (v1 or v2), or None and why not."""
    for root, limit_file, usage_file in (
            (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.usage_in_bytes"),
            (Path("/sys/fs/cgroup"), "memory.max", "cgroup.controllers")):
        if not (root / usage_file).exists() or (
                usage_file == "cgroup.controllers"
                and "memory" not in (root / usage_file).read_text().split()):
            continue
        group = root / f"deploybench-fault-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / limit_file).write_text(str(limit))
            return group, ""
        except OSError as exc:
            with_error = f"cannot make a memory cgroup under {root}: {exc.strerror}"
            if group.exists():
                group.rmdir()
            return None, with_error
    return None, "no memory cgroup hierarchy (cgroup v1 memory or v2) is mounted"


def hog(path: Path, side: int = 32768) -> Path:
    """y = x + the sum of a side x side float32 tensor of ones, made when it runs (4 GB)."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [side, side])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    return onnx_model(path, [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [shape])


def memory_killed(folder: Path) -> tuple[bool | None, str]:
    """`bench` of a model that needs 4 GB to run, in a memory cgroup of 1.5 GB: the kernel's
    out-of-memory killer kills the child that runs it."""
    group, why = _memory_cgroup(folder, 1_500_000_000)
    if group is None:
        return None, why
    try:
        model, out = hog(folder / "hog.onnx"), folder / "bench"
        procs = group / "cgroup.procs"
        run = subprocess.run(
            [*CLI, "bench", str(model), "--rounds", "1", "--batch-sizes", "1", "--out",
             str(out)], capture_output=True, text=True, timeout=600,
            preexec_fn=lambda: procs.write_text(str(os.getpid())))
        said = [r.get("reason") or "" for r in records(out) if r["status"] == "failed"]
        oom = [r for r in said if "out-of-memory killer: the machine" in r]
        held = (bool(oom) and run.returncode in (0, 1) and "Traceback" not in run.stderr)
        return held, (f"exit {run.returncode}; {len(oom)} of {len(said)} failed records say "
                      f"the out-of-memory killer killed the child" + (
                          f" ({oom[0][:90]}...)" if oom else
                          f" ({said[0][:120] if said else run.stderr[-200:]})"))
    finally:
        for _ in range(50):  # its processes gone, the group can go
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def node_killed(folder: Path) -> tuple[bool | None, str]:
    """A run on two Ray nodes (each measuring every case), the second node killed while it
    measures: its cases fail with the reason and the driver finishes; the node back, --resume
    measures them again."""
    from tests import ray_nodes

    why = ray_nodes.why_not()
    if why:
        return None, why
    suite, out, logs = folder / "suite.toml", folder / "driver" / "run", folder / "logs"
    out.parent.mkdir(parents=True)
    suite.write_text(SUITE)
    checkout = Path(__file__).resolve().parent.parent
    masked = [out.parent, checkout / "toolkit", checkout / "exporters"]
    env = ray_nodes.environment()
    address, head = ray_nodes.start_head(logs)
    node = ray_nodes.start_hidden_node(address, masked, logs)
    try:
        proc = subprocess.Popen([*CLI, "run", "--suite", str(suite), "--out", str(out),
                                 "--cluster", address, "--placement", "each-node"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        on_b = lambda: any((r.get("info") or {}).get("node", {}).get("name") == "node-b"  # noqa: E731
                           and r["phase"] == "infer" for r in _records_or_none(out))
        reached = wait_for(on_b, 300)
        ray_nodes.stop(node)  # kill -9 of every process of the node
        _, stderr = proc.communicate(timeout=600)
        lost = [r for r in _records_or_none(out) if (r.get("info") or {}).get("lost")]
        node = ray_nodes.start_hidden_node(address, masked, logs)
        resumed = subprocess.run([*CLI, "run", "--resume", str(out)], capture_output=True,
                                 text=True, timeout=600, env=env)
        after = _records_or_none(out)
        left = [r for r in after if (r.get("info") or {}).get("lost")]
        b_ok = [r for r in after if r["status"] == "ok" and r["phase"] == "infer"
                and (r.get("info") or {}).get("node", {}).get("name") == "node-b"]
        held = (reached and proc.returncode in (0, 1) and bool(lost) and all(
            "--resume runs it again" in r["reason"] for r in lost) and resumed.returncode == 0
            and not left and bool(b_ok) and "Traceback" not in stderr + resumed.stderr)
        return held, (f"exit {proc.returncode}; {len(lost)} records of node-b's lost steps "
                      f"failed with the reason ({(lost[0]['reason'][:70] + '...') if lost else ''}"
                      f"); node-b back, --resume exit {resumed.returncode}: {len(left)} lost "
                      f"left, {len(b_ok)} timings on node-b")
    finally:
        ray_nodes.stop(node)
        ray_nodes.stop(head)


def _records_or_none(out: Path) -> list[dict]:
    try:
        return records(out)
    except (OSError, ValueError, KeyError):
        return []


def truncated(folder: Path) -> tuple[bool, str]:
    model, out = relu(folder / "relu.onnx"), folder / "bench"
    made = cli("bench", str(model), "--rounds", "1", "--out", str(out))
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text[: len(text) // 2])
    path = str(out / "results.json")
    shown = [cli("report", path), cli("compare", path, path)]
    whys = [one_error_line(p) for p in shown]
    held = made.returncode == 0 and all(p.returncode == 2 for p in shown) and whys == [None] * 2
    said = next((x for x in shown[0].stderr.splitlines() if x.startswith("error:")), "")
    return held, (f"report exit {shown[0].returncode}, compare exit {shown[1].returncode}; "
                  + (f"one error line each ({said[:90]})" if whys == [None] * 2
                     else str(whys)))


def corrupt_samples(folder: Path) -> tuple[bool, str]:
    model, out = relu(folder / "relu.onnx"), folder / "bench"
    made = cli("bench", str(model), "--rounds", "1", "--out", str(out))
    (out / "samples.npz").write_bytes(b"not an npz archive")
    (out / "report.md").unlink()
    shown = cli("report", str(out / "results.json"))  # reads results.json only
    resumed = cli("bench", "--resume", str(out))  # would add to the raw samples
    why = one_error_line(resumed)
    line = next((x for x in resumed.stderr.splitlines() if x.startswith("error:")), "")
    held = (made.returncode == 0 and shown.returncode == 0 and (out / "report.md").is_file()
            and resumed.returncode == 2 and why is None)
    return held, (f"report exit {shown.returncode}, report.md written; --resume exit "
                  f"{resumed.returncode}; {why or line[:110]}")


FAULTS = [
    Fault("driver-kill", "kill -9 of the driver mid-run: a whole results.json, no process "
          "left, --resume runs each missing step once", driver_killed),
    Fault("child-kill", "kill -9 of a measuring child: its records failed naming the signal, "
          "the others measured, a warning line per failure, exit 0", child_killed),
    Fault("loadgen-term", "SIGTERM during loadgen: exit 130 saying --resume, no process left; "
          "--resume finishes", terminated("loadgen")),
    Fault("advise-term", "SIGTERM during advise: exit 130 saying --resume, no process left; "
          "--resume writes the advice", terminated("advise")),
    Fault("disk-full", "files that cannot grow mid-bench: one error line, exit 2, a whole "
          "results.json; --resume finishes", disk_full),
    Fault("two-runs", "two bench runs at once into one history: both stored", two_at_once),
    Fault("tampered", "a built model replaced by a pickle that runs a command, then --resume: "
          "nothing runs, one error line naming the file, exit 2", tampered),
    Fault("truncated", "a truncated results.json to report and compare: one error line "
          "each, exit 2", truncated),
    Fault("samples", "a corrupt samples.npz: report (which reads results.json only) writes "
          "the reports; --resume, which adds to it, is one error line, exit 2",
          corrupt_samples),
    Fault("memory", "a child killed by the kernel for memory (a 4 GB model in a 1.5 GB "
          "cgroup): its records failed saying the out-of-memory killer killed it, no "
          "traceback", memory_killed),
    Fault("node-kill", "a Ray node killed mid-run: its cases failed with the reason, the "
          "driver finishes; the node back, --resume measures them again", node_killed),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="faults to inject, by name, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep each fault's folder under DIR")
    args = parser.parse_args()
    chosen = [f for f in FAULTS if not args.only or f.name in args.only.split(",")]
    if not chosen:
        raise SystemExit(f"--only {args.only}: known faults are "
                         f"{', '.join(f.name for f in FAULTS)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="deploybench-faults-"))
    rows = []
    for fault in chosen:
        folder = root / fault.name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        try:
            held, what = fault.inject(folder)
        except Exception as exc:  # the harness failed: say so in the table
            held, what = False, f"the injection failed: {type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        shown = "not injected here" if held is None else "held" if held else "NOT HELD"
        print(f"{fault.name}: {shown} ({seconds:.0f} s): {what}", flush=True)
        rows.append((fault, held, what, seconds))
    print("\n| fault | what must happen | what happened | held | s |")
    print("| --- | --- | --- | --- | --- |")
    for fault, held, what, seconds in rows:
        shown = "not injected" if held is None else "yes" if held else "NO"
        print(f"| {fault.name} | {fault.must} | {what} | {shown} | {seconds:.0f} |")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    raise SystemExit(0 if all(held is not False for _, held, _, _ in rows) else 1)


if __name__ == "__main__":
    main()
