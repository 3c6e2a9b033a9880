"""Two Ray nodes on this machine that share no disk for the run's folders: the head (where the
test's driver runs) and `node-b`, started with `unshare --mount --uts`, its own hostname and a
tmpfs over the folder that holds the runs and the models, as another machine would see them.
Each node offers one unit of the `deploybench` resource. Needs root and unshare."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
RESOURCES = '{"deploybench": 1}'


def why_not() -> str | None:
    """Why two such nodes cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a node with its own view of the disk needs root (unshare --mount)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "--uts", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"unshare is not permitted here: {probe.stderr.decode().strip()}"
    if not Path(RAY).exists():
        return "Ray is not installed (pip install 'deploybench[cluster]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"no {text!r} in {log} after {timeout}s:\n{log.read_text()[-2000:]}")


def _session(sid: int) -> list[int]:
    """The live processes of session `sid` (a node: ray start, raylet, agents, workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the node's session (SIGTERM makes ray drain for up to 30 s)."""
    for _ in range(100):
        pids = _session(proc.pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.poll()
        time.sleep(0.1)
    proc.wait()


def environment(auth_mode: str = "disabled", **extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": auth_mode, "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def start_head(logs: Path, auth_mode: str = "disabled", resources: str = RESOURCES,
               **extra: str) -> tuple[str, subprocess.Popen]:
    """A head node offering the resource (and any other of `resources`, JSON);
    `auth_mode="token"` with RAY_AUTH_TOKEN in `extra` for one that wants a token."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"head-{auth_mode}.log"
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={free_port()}", "--num-cpus=1",
         f"--resources={resources}", "--include-dashboard=false",
         f"--ray-client-server-port={free_port()}", "--disable-usage-stats", "--block"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=environment(auth_mode, **extra), start_new_session=True, cwd="/")
    try:  # the address line, not "Ray runtime started.": it comes a few ms after that one
        _wait_for(head, log, "ray start --address='", 90)
    except BaseException:
        stop(head)
        raise
    for _ in range(50):  # "ray start --address='10.0.0.2:56309'", the whole of it
        said = re.search(r"ray start --address='([^']+)'", log.read_text(errors="replace"))
        if said:
            return said.group(1), head
        time.sleep(0.1)
    stop(head)
    raise RuntimeError(f"the head did not say its address:\n{log.read_text()[-2000:]}")


def start_hidden_node(address: str, masked: list[Path], logs: Path, resources: str = RESOURCES,
                      cpus: str | None = None) -> subprocess.Popen:
    """node-b: its own hostname, and an empty tmpfs over each folder of `masked`; `resources`
    (JSON) it offers; `cpus`: the only CPUs it may run on (`taskset -c`), as a smaller
    machine."""
    for folder in masked:
        folder.mkdir(parents=True, exist_ok=True)
    log = logs / "node-b.log"
    mounts = " && ".join(f"mount -t tmpfs tmpfs {folder}" for folder in masked)
    script = (f"mount --make-rprivate / && hostname node-b && {mounts} && "
              f"exec {f'taskset -c {cpus} ' if cpus else ''}{RAY} start --address={address} "
              f"--num-cpus=1 --resources='{resources}' "
              "--disable-usage-stats --block")
    node = subprocess.Popen(["unshare", "--mount", "--uts", "sh", "-c", script],
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=environment(), start_new_session=True,
                            cwd="/")  # a folder it is to see masked must not be its own
    try:
        _wait_for(node, log, "Ray runtime started.", 90)
    except BaseException:
        stop(node)
        raise
    return node
