"""A system under test for MLPerf LoadGen: a pool of workers serving one option.

The pool stands behind the two callbacks LoadGen calls (`issue_queries`, `flush_queries`).

Workers are threads (ONNX Runtime, which releases the GIL while it runs: one session shared by
all, or one each) or processes (a native runtime, which holds the GIL for much of a call: each
process loads its own model). Each worker takes a job from one queue and answers it with one
call. Worker processes' queues are pipes written by the thread that puts (no feeder thread: on
two busy cores each thread a query passes through costs it a wake-up). With batching, a
dispatcher stands in front of them, as a serving system's dynamic batcher does: when a worker
is free it takes the next query and what else arrives, up to `max_batch` samples or until
`max_delay_s` has passed, and hands them on as one job (while every worker is busy, queries
wait and are batched together). A worker that raises answers its samples anyway (so LoadGen
can finish) and the error fails the run; a worker process that dies ends this process, since
LoadGen would wait for its samples forever.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.isolate import NO_SPINNING, THREAD_VARIABLES

log = logging.getLogger(__name__)

Predict = Callable[[Sequence[int]], Any]  # sample indices -> the model's answer for those rows


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs every query more
class Job:
    ids: tuple[int, ...]  # LoadGen's response ids
    indices: tuple[int, ...]  # the rows of the inputs they ask for
    arrived: float = 0.0  # time.perf_counter() when LoadGen issued it (0: unknown)


def gather(get: Callable[[float | None], Job | None], first: Job, max_batch: int,
           max_delay_s: float) -> tuple[list[Job], bool]:
    """`first` and what else arrives until `max_delay_s` after `first` arrived (the oldest
    queued query's arrival, as Triton's dynamic batcher counts it: a query that already waited
    in the backlog is not held longer while a worker idles), up to `max_batch` samples; and
    whether the pool's stop sentinel was met while gathering."""
    jobs, count = [first], len(first.ids)
    deadline = (first.arrived or time.perf_counter()) + max_delay_s
    while count < max_batch:
        try:
            job = get(max(deadline - time.perf_counter(), 0.0))
        except queue.Empty:
            break
        if job is None:
            return jobs, True
        jobs.append(job)
        count += len(job.ids)
    return jobs, False


def serve(get: Callable[[float | None], Job | None], predict: Predict,
          done: Callable[[Sequence[int], str | None], None]) -> None:
    """One worker's loop: take a job, answer it with one call, until the sentinel."""
    while True:
        job = get(None)
        if job is None:
            return
        error = None
        try:
            predict(job.indices)
        except Exception as exc:  # answered anyway so LoadGen can finish; the run fails
            error = f"{type(exc).__name__}: {exc}"
        done(job.ids, error)


def _blocking(source: Any) -> Callable[[float | None], Job | None]:
    """A queue's get: block forever (None) or for up to `timeout` seconds (0: do not wait)."""
    def get(timeout: float | None) -> Job | None:
        if timeout is None:
            return source.get()
        if timeout <= 0:
            return source.get_nowait()
        return source.get(timeout=timeout)

    return get


class Pool(abc.ABC):
    """Workers behind LoadGen's callbacks. `split` is how a query's samples become jobs: one job
    per `split` samples (offline: the batch size; multistream: the whole query)."""

    # seconds each query's intake spins, holding the GIL, before it is queued: a known serial
    # cost for the calibration's test to find (`toolkit.calibrate`); never set when serving
    intake_delay_s: float = 0.0

    def __init__(self, workers: int, max_batch: int, max_delay_s: float, split: int = 1) -> None:
        self.workers = workers
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.split = split
        self.errors: list[str] = []
        self._complete: Callable[[Sequence[int]], None] = lambda ids: None
        self._free = threading.Semaphore(workers)  # workers not answering a batch
        self._incoming: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        if max_batch > 1:
            self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                                name="batcher")
            self._dispatcher.start()

    @property
    def batching(self) -> bool:
        return self._dispatcher is not None

    def _dispatch(self) -> None:
        """The dynamic batcher: once a worker is free, the next query and what else arrives
        within the delay, up to the batch size, as one job."""
        get = _blocking(self._incoming)
        while True:
            self._free.acquire()
            first = get(None)
            if first is None:
                return
            jobs, stop = gather(get, first, self.max_batch, self.max_delay_s)
            self.put(Job(tuple(i for job in jobs for i in job.ids),
                         tuple(i for job in jobs for i in job.indices), first.arrived))
            if stop:
                return

    def stop_dispatcher(self) -> None:
        if self._dispatcher is not None:
            self._incoming.put(None)
            self._free.release()
            self._dispatcher.join(timeout=10)

    def bind(self, complete: Callable[[Sequence[int]], None]) -> None:
        """Where answered ids go: LoadGen's QuerySamplesComplete, wrapped."""
        self._complete = complete

    def done(self, ids: Sequence[int], error: str | None) -> None:
        if error is not None and len(self.errors) < 5:
            self.errors.append(error)
        self._complete(ids)
        if self.batching:
            self._free.release()

    def issue(self, samples: Sequence[Any]) -> None:
        """LoadGen's issue_queries: the query's samples, as jobs on the queue."""
        step = self.split
        put = self._incoming.put if self.batching else self.put
        now = time.perf_counter()
        if step == 1:  # a job a sample (the server scenario): the per-query path, kept short
            if self.intake_delay_s > 0:
                put = _spinning_first(put, self.intake_delay_s)
            for sample in samples:
                put(Job((sample.id,), (sample.index,), now))
            return
        for start in range(0, len(samples), step):
            chunk = samples[start:start + step]
            put(Job(tuple(s.id for s in chunk), tuple(s.index for s in chunk), now))

    @abc.abstractmethod
    def put(self, job: Job | None) -> None:
        """Hand a job (or the stop sentinel, None) to the workers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers once the queued jobs are answered."""


WARM_CALLS = 3  # calls at each size a worker will be sent, before the first LoadGen run


def warm(predict: Predict, sizes: Sequence[int], rows: int) -> None:
    """A worker's first calls at each size it will be sent (a runtime's first calls at a new
    shape are slow), so none of them lands in a LoadGen run."""
    for size in sizes:
        try:
            for _ in range(WARM_CALLS):
                predict(np.arange(size, dtype=np.int64) % rows)
        except Exception as exc:  # ORT's errors are not RuntimeErrors: say it as one
            raise RuntimeError(f"the model failed its warm-up call at {size} rows: "
                               f"{type(exc).__name__}: {exc}") from exc


def warm_sizes(max_batch: int, split: int) -> tuple[int, ...]:
    """The row counts a worker is sent: every size the batcher can form, else the split."""
    return tuple(range(1, max_batch + 1)) if max_batch > 1 else (split,)


def _spinning_first(put: Callable[[Job], None], seconds: float) -> Callable[[Job], None]:
    """`put`, after spinning `seconds` (the GIL held throughout, as a real intake holds it)."""
    def slow_put(job: Job) -> None:
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            pass
        put(job)

    return slow_put


class ThreadPool(Pool):
    """Threads in this process, each with its own `predict` (one per session) or sharing one.
    With `rows`, each worker's predict is warmed (`warm`) before any query comes."""

    def __init__(self, predicts: Sequence[Predict], max_batch: int, max_delay_s: float,
                 split: int = 1, rows: int = 0) -> None:
        if rows:
            for predict in predicts:
                warm(predict, warm_sizes(max_batch, split), rows)
        super().__init__(len(predicts), max_batch, max_delay_s, split)
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        get = _blocking(self._queue)
        self._threads = [threading.Thread(target=serve, daemon=True, name=f"worker-{n}",
                                          args=(get, p, self.done))
                         for n, p in enumerate(predicts)]
        for thread in self._threads:
            thread.start()

    def put(self, job: Job | None) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self.stop_dispatcher()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)


@dataclass(frozen=True)
class LoadSpec:
    """What a worker process needs to load the model (sent to it pickled)."""

    runner: str  # a key of toolkit.runners.RUNNERS
    artifact: str
    inputs: str
    call: str  # the runner's variant to serve with
    provider: str
    threads: int
    warm: tuple[int, ...] = ()  # the row counts it is called at before it says ready
    optimization: str = "all"  # ONNX Runtime's graph optimisation level
    session: tuple[tuple[str, Any], ...] = ()  # and its other session options
    spinning: bool = False  # its threads spin while waiting (ScenarioSettings.spinning)


def _process_main(spec: LoadSpec, jobs: Any, answers: Any) -> None:
    """A worker process: load the model, warm it, say ready, serve until the sentinel."""
    from toolkit.errors import ProviderUnavailableError

    try:
        predict, settings = load_predict(spec)
        with np.load(spec.inputs) as archive:
            warm(predict, spec.warm, len(archive[archive.files[0]]))
    except ProviderUnavailableError as exc:  # not a failure: the provider cannot run here
        answers.put(("unavailable", str(exc)))
        return
    except BaseException as exc:
        answers.put(("failed", f"{type(exc).__name__}: {exc}"))
        return
    answers.put(("ready", settings))
    serve(_blocking(jobs), predict, lambda ids, error: answers.put(("done", ids, error)))


def load_predict(spec: LoadSpec) -> tuple[Predict, dict[str, Any]]:
    """The model loaded in this process, as a function of sample indices; and the settings
    its runtime applied."""
    from toolkit.runners import RUNNERS, RunnerConfig

    runner = RUNNERS[spec.runner].load(Path(spec.artifact),
                                       RunnerConfig(provider=spec.provider,
                                                    threads=spec.threads,
                                                    spinning=spec.spinning,
                                                    optimization=spec.optimization,
                                                    session=spec.session))
    fixed_batch_fits(runner, max(spec.warm, default=1))
    with np.load(spec.inputs) as archive:
        x = {name: archive[name] for name in archive.files}
    return rows_predict(runner, spec.call, x), serving_settings(runner)


def fixed_batch_fits(runner: Any, rows: int) -> None:
    """A model whose batch dimension is fixed serves calls of up to that many rows (padded to
    it); ProviderUnavailableError, a skip with why, where a call would need more."""
    from toolkit.errors import ProviderUnavailableError

    fixed = getattr(runner, "fixed_batch", None)
    if fixed is not None and rows > fixed:
        raise ProviderUnavailableError(
            f"the model's batch dimension is fixed at {fixed}; this serving path sends up to "
            f"{rows} rows per call")


def serving_settings(runner: Any) -> dict[str, Any]:
    """The runtime's settings, read back, and the batch every call is padded to, if any."""
    fixed = getattr(runner, "fixed_batch", None)
    return {**runner.settings, **({"padded_to": fixed} if fixed is not None else {})}


def rows_predict(runner: Any, call: str, x: dict[str, np.ndarray]) -> Predict:
    """`runner`'s `call` on the rows a job names: the request made into the runtime's input and
    the call, as a server pays for both. A model whose batch dimension is fixed gets every call
    padded to that size (the last row repeated; LoadGen is answered for its own queries only),
    never a partial batch it cannot take."""
    fixed = getattr(runner, "fixed_batch", None)
    arrays = tuple(x.items())
    prepare = runner.prepare
    feeds: tuple[tuple[str, np.ndarray], ...] = ()
    if runner.runtime == "onnxruntime" and call in ("run", "copies") and fixed is None:
        with contextlib.suppress(ValueError):  # an input missing: the warm-up call says so
            feeds = tuple(runner.feed(dict(arrays)).items())  # by the session's input names
    if feeds:
        # ONNX Runtime's plain call, as a server makes it: the feed built here, not through
        # prepare (which builds a call to time many times: microseconds more on every query)
        run = runner.session.run

        def predict(indices: Sequence[int]) -> Any:
            if len(indices) == 1:  # one row: a view (a copy costs as much as a fast call)
                row = indices[0]
                return run(None, {name: array[row:row + 1] for name, array in feeds})
            chosen = np.asarray(indices, dtype=np.int64)
            return run(None, {name: array[chosen] for name, array in feeds})

        return predict

    def predict(indices: Sequence[int]) -> Any:
        if fixed is not None and len(indices) < fixed:
            indices = [*indices, *[indices[-1]] * (fixed - len(indices))]
        if len(indices) == 1:  # one row: a view (a copy costs as much as a fast call)
            row = int(indices[0])
            return prepare(call, {name: array[row:row + 1] for name, array in arrays})()
        chosen = np.asarray(indices, dtype=np.int64)
        return prepare(call, {name: array[chosen] for name, array in arrays})()

    return predict


class ProcessPool(Pool):
    """Worker processes (spawned: each imports its runtime afresh), each loading the model."""

    def __init__(self, spec: LoadSpec, workers: int, max_batch: int, max_delay_s: float,
                 split: int = 1, start_timeout_s: float = 300.0) -> None:
        super().__init__(workers, max_batch, max_delay_s, split)
        context = multiprocessing.get_context("spawn")
        self.settings: dict[str, Any] = {}
        # SimpleQueue, not Queue: put writes the pipe itself, where Queue hands each item to
        # a feeder thread (two more wake-ups per query, and a longer p99)
        self._jobs = context.SimpleQueue()
        self._answers = context.SimpleQueue()
        self._processes = [context.Process(target=_process_main, daemon=True,
                                           args=(spec, self._jobs, self._answers))
                           for _ in range(workers)]
        saved = dict(os.environ)
        try:  # each process's own BLAS and OpenMP pools: the threads of one worker
            os.environ.update({name: str(spec.threads) for name in THREAD_VARIABLES})
            if spec.spinning:  # OpenMP's threads spin while they wait, or they do not
                for name in NO_SPINNING:
                    os.environ.pop(name, None)
            else:
                os.environ.update(NO_SPINNING)
            for process in self._processes:
                process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            self._await_ready(start_timeout_s)
        except BaseException:
            self.stop_dispatcher()
            raise
        self._closing = False
        self._drained = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="answers")
        self._reader.start()
        self._watch = threading.Thread(target=self._watch_workers, daemon=True, name="watch")
        self._watch.start()

    def _await_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        ready = 0
        while ready < len(self._processes):
            if not self._answers._poll(0.5):  # SimpleQueue's own poll: its get has no timeout
                dead = [p.exitcode for p in self._processes if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    self._stop()
                    raise RuntimeError(
                        f"a worker process exited (code {dead[0]}) before it was ready: it "
                        "died loading the model or on its first (warm-up) calls"
                        if dead else f"the worker processes did not load the model within "
                        f"{timeout_s:g} s (raise --timeout: a worker may take a quarter of "
                        "it)") from None
                continue
            message = self._answers.get()
            if message[0] == "unavailable":
                from toolkit.errors import ProviderUnavailableError

                self._stop()
                raise ProviderUnavailableError(message[1])
            if message[0] == "failed":
                self._stop()
                raise RuntimeError(f"a worker process could not load or warm the model: "
                                   f"{message[1]}")
            self.settings = dict(message[1])
            ready += 1

    def _read(self) -> None:
        """Answers as they come, until the workers have ended and none is left to read."""
        while True:
            if not self._answers._poll(0.2):
                if self._drained:
                    return
                continue
            _, ids, error = self._answers.get()
            self.done(ids, error)

    def _watch_workers(self) -> None:
        """A dead worker leaves samples LoadGen waits for forever: end this process, so the
        step fails with why (the parent's fill-in) instead of hanging until its timeout."""
        while not self._closing:
            for process in self._processes:
                if process.exitcode is not None and not self._closing:
                    log.error("a worker process died (exit code %s) while serving",
                              process.exitcode)
                    os._exit(70)
            time.sleep(0.2)

    def put(self, job: Job | None) -> None:
        # written to the pipe in this thread: past the pipe's 64 KiB of queued jobs (an
        # overloaded run) the caller waits for the workers, as a full server's socket would
        self._jobs.put(job)

    def close(self) -> None:
        self._closing = True
        self.stop_dispatcher()
        for _ in self._processes:
            self._jobs.put(None)
        for process in self._processes:
            process.join(timeout=30)
        self._drained = True  # every worker has ended: what is in the pipe is all there is
        self._reader.join(timeout=5)
        self._stop()

    def _stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for channel in (self._jobs, self._answers):
            channel.close()
