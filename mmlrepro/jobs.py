"""Many runs at once: K worker processes on one machine, or Ray tasks on a cluster (issue 19).

:class:`Workers` says how (``jobs`` K, ``executor`` ``local`` or ``ray``, the devices, threads
and per-run resources) and is checked before any data is loaded. :func:`train_parallel` is
:func:`mmlrepro.runner.run_missing`'s loop for K > 1 or Ray: it keeps up to K runs in flight,
started in plan order, each leased in the store first (:mod:`mmlrepro.leases`); a worker
(:func:`train_job`) trains one run and returns its :class:`~mmlrepro.results.RunResult` to the
parent, which alone writes the store. A finished run prints one line and the overall count with
an ETA from the stored timings; a run that fails is named with its error while the others go on,
and :class:`RunsFailed` lists the failures at the end. Ctrl-C stops the workers, keeps every
finished run and checkpoint, and says that the same command resumes.

Local workers are ``concurrent.futures.ProcessPoolExecutor`` processes (spawn start method),
spread over ``devices`` (default: every visible GPU, else the CPU) by the fewest runs in flight,
each with ``threads_per_job`` torch threads (default: cores // K). Ray tasks ask for
``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (fractional: 0.25 puts four runs on a GPU) and
read the data from their own ``MMLREPRO_DATA_DIR`` or cache; results come back to the driver, so
no shared filesystem is needed (a run's checkpoint stays on the worker that trained it).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import platform
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mmlrepro.checkpoint import CHECKPOINT_EVERY_S
from mmlrepro.config import RunConfig
from mmlrepro.data import DataError, Dataset
from mmlrepro.devices import resolve_device
from mmlrepro.files import describe_error
from mmlrepro.leases import Leases
from mmlrepro.results import ResultsStore, RunResult
from mmlrepro.train import RunInterrupted

EXECUTORS = ("local", "ray")
RAY_HINT = "pip install 'mmlrepro[ray]'"
MAX_JOBS = 1024          # runs at a time: more than any machine or cluster this runs on holds [assumed]
RAY_CONNECT_TIMEOUT_S = 3.0   # a Ray address must accept a TCP connection within this, or is refused
PARENT_POLL_S = 1.0      # a local worker checks this often that the process that started it lives


class RunsFailed(RuntimeError):
    """Some runs of a ``reproduce`` failed; the others are stored. The message names each."""


@dataclass(frozen=True)
class Workers:
    """How :func:`mmlrepro.runner.run_missing` trains: ``jobs`` runs at a time (1: one after the
    other in this process, the default), on ``executor`` ``local`` (worker processes) or ``ray``.

    ``local``: ``devices`` (default: every visible GPU, else ``["cpu"]``), ``threads_per_job``
    (default: cores // jobs). ``ray``: ``address`` (None: a local Ray started on the spot;
    ``auto``; ``ray://host:10001``), ``cpus_per_run`` (default 1), ``gpus_per_run`` (default 0;
    fractional allowed), and ``jobs`` (default: as many as the cluster's resources hold).
    """

    jobs: int | None = None
    executor: str = "local"
    devices: tuple[str, ...] | None = None
    threads_per_job: int | None = None
    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None

    @property
    def parallel(self) -> bool:
        """False: today's loop, one run after the other in this process."""
        return self.executor == "ray" or (self.jobs or 1) > 1

    def check(self, device: str | None) -> None:
        """ValueError, one line, for settings that are wrong or do not apply (before compute)."""
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.jobs is not None and (not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1):
            raise ValueError(f"jobs must be an integer >= 1, got {self.jobs!r}")
        if self.jobs is not None and self.jobs > MAX_JOBS:
            raise ValueError(f"jobs must be at most {MAX_JOBS:,} runs at a time, got {self.jobs:,}")
        if self.threads_per_job is not None and (not isinstance(self.threads_per_job, int) or self.threads_per_job < 1):
            raise ValueError(f"threads_per_job must be an integer >= 1, got {self.threads_per_job!r}")
        if self.executor == "local":
            ray_only = [name for name, value in (("address", self.address), ("cpus_per_run", self.cpus_per_run),
                                                 ("gpus_per_run", self.gpus_per_run)) if value is not None]
            if ray_only:
                raise ValueError(f"{', '.join(ray_only)} apply to executor 'ray' only (--executor ray)")
            if not self.parallel and (self.devices is not None or self.threads_per_job is not None):
                raise ValueError("devices and threads_per_job apply to jobs > 1 (one process uses "
                                 "--device, and OMP_NUM_THREADS for its threads)")
            if self.devices is not None and device is not None:
                raise ValueError("give either device (one device for every run) or devices (spread over), not both")
            for name in self.devices or ():
                resolve_device(name)
            return
        if self.devices is not None or self.threads_per_job is not None:
            raise ValueError("devices and threads_per_job apply to executor 'local'; Ray tasks take "
                             "gpus_per_run and cpus_per_run")
        if device is not None:
            raise ValueError("device does not apply to executor 'ray': a task runs on a GPU when "
                             "gpus_per_run > 0, else on the CPU")
        if self.cpus_per_run is not None and not self.cpus_per_run > 0:
            raise ValueError(f"cpus_per_run must be > 0, got {self.cpus_per_run}")
        if self.gpus_per_run is not None and not self.gpus_per_run >= 0:
            raise ValueError(f"gpus_per_run must be >= 0, got {self.gpus_per_run}")
        if self.address is None and (self.gpus_per_run or 0) > 0:
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"gpus_per_run {self.gpus_per_run:g} needs a GPU, and the local Ray this "
                                 "would start has none (no CUDA device here); give --address of a cluster "
                                 "with GPUs, or leave gpus_per_run at 0")
        if self.address not in (None, "auto"):
            check_reachable(self.address)
        import_ray()

    def local_devices(self, device: str | None) -> list[str]:
        """The devices local workers are spread over."""
        import torch

        if self.devices:
            return list(self.devices)
        if device is not None:
            return [device]
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]

    def local_threads(self) -> int:
        """torch threads of each local worker: ``threads_per_job``, else this process's cores // K."""
        return self.threads_per_job or max(1, usable_cores() // (self.jobs or 1))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_reachable(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """ValueError unless the Ray address ``host:port`` or ``ray://host:port`` accepts a TCP
    connection within ``timeout_s`` (before Ray is started, which would wait for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be auto, host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        why = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ValueError(f"the Ray cluster at {address} cannot be reached ({why} within {timeout_s:g} s): "
                         "is it started (ray start --head) and is the port right?") from None


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ValueError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


# --------------------------------------------------------------------------------------------
# the worker side


@dataclass(frozen=True)
class Job:
    """One run for a worker: the config (device set), the data fingerprint the parent keyed it
    by, where the data is (None: the worker's ``MMLREPRO_DATA_DIR`` or cache), torch threads."""

    config: RunConfig
    fingerprint: str
    data_dir: str | None = None
    threads: int | None = None
    checkpoint_every_s: float = CHECKPOINT_EVERY_S


@lru_cache(maxsize=2)
def _worker_dataset(name: str, data_dir: str | None) -> Dataset:
    """A worker's datasets, loaded once per process."""
    from mmlrepro.preflight import load_run_dataset

    return load_run_dataset(RunConfig(dataset=name), data_dir)


def train_job(job: Job) -> RunResult:
    """Train ``job`` in a worker and return its result (the parent stores it).

    A dataset the worker cannot load, or whose content differs from the parent's, is a
    :class:`DataError` naming the worker's host."""
    import torch

    from mmlrepro.train import train

    if job.threads:
        torch.set_num_threads(job.threads)
    where = f"worker {platform.node()} (pid {os.getpid()})"
    try:
        source = _worker_dataset(job.config.dataset, job.data_dir)
    except DataError as err:
        raise DataError(f"{where}: {describe_error(err)}") from None
    if source.fingerprint != job.fingerprint:
        raise DataError(f"{where}: {job.config.dataset} has fingerprint {source.fingerprint} there, "
                        f"not the driver's {job.fingerprint}; give every worker the same data")
    return train(job.config, dataset=source, checkpoint_every_s=job.checkpoint_every_s)


def _init_local_worker(parent: int) -> None:
    """Local workers leave Ctrl-C to the parent (which stops them), draw no progress bars, and
    exit within :data:`PARENT_POLL_S` seconds of the parent's death (a SIGKILL gives the parent
    no chance to stop them; their runs' checkpoints stay, and the same command resumes them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TQDM_DISABLE"] = "1"

    def watch() -> None:    # the parent's pid comes from the parent: it may die before this runs
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="mmlrepro-parent-watch", daemon=True).start()


# --------------------------------------------------------------------------------------------
# executors: submit(job) -> concurrent.futures.Future


class LocalPool:
    """K spawn-started worker processes, runs spread over devices by the fewest in flight."""

    def __init__(self, workers: Workers, device: str | None) -> None:
        self.devices = workers.local_devices(device)
        self.threads = workers.local_threads()
        self.slots = workers.jobs or 1
        self.in_flight = dict.fromkeys(self.devices, 0)
        self.pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_local_worker, initargs=(os.getpid(),))

    def describe(self) -> str:
        return (f"{self.slots} worker processes on {', '.join(self.devices)}, "
                f"{self.threads} torch thread(s) each")

    def submit(self, job: Job) -> tuple[cf.Future, str]:
        device = min(self.devices, key=lambda d: self.in_flight[d])
        self.in_flight[device] += 1
        job = Job(job.config.replace(device=device), job.fingerprint, job.data_dir, self.threads,
                  job.checkpoint_every_s)
        try:
            return self.pool.submit(train_job, job), device
        except cf.process.BrokenProcessPool:   # a worker died earlier: a fresh pool
            self.pool = self._new_pool()
            return self.pool.submit(train_job, job), device

    def done(self, device: str) -> None:
        self.in_flight[device] -= 1

    def stop(self) -> None:
        """Stop at once: queued runs cancelled, running workers terminated (their checkpoints stay)."""
        processes = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class RayPool:
    """Each run a Ray task with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs."""

    def __init__(self, workers: Workers, data_dir: str | None) -> None:
        ray = import_ray()
        self.ray = ray
        self.cpus = workers.cpus_per_run or 1.0
        self.gpus = workers.gpus_per_run or 0.0
        self.device = "cuda" if self.gpus > 0 else "cpu"
        self.started_here = not ray.is_initialized() and workers.address is None
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("MMLREPRO_") or k == "PYTHONPATH"}
            kwargs: dict[str, Any] = ({"address": workers.address} if workers.address is not None
                                      else {"include_dashboard": False})
            if workers.address is None:   # a local Ray: the workers see this machine's data and paths
                kwargs["runtime_env"] = {"env_vars": {**env, "TQDM_DISABLE": "1"}}
            ray.init(log_to_driver=False, **kwargs)
        resources = ray.cluster_resources()
        by_cpu = resources.get("CPU", 0.0) / self.cpus
        by_gpu = resources.get("GPU", 0.0) / self.gpus if self.gpus > 0 else float("inf")
        capacity = int(min(by_cpu, by_gpu))
        if capacity < 1:
            raise ValueError(f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} "
                             f"GPUs) cannot hold one run of {self.cpus:g} CPUs and {self.gpus:g} GPUs")
        self.slots = workers.jobs or capacity
        self.task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(train_job)
        self.refs: dict[cf.Future, Any] = {}
        self.data_dir = data_dir

    def describe(self) -> str:
        return (f"Ray tasks of {self.cpus:g} CPU(s) and {self.gpus:g} GPU(s), up to {self.slots} at a time "
                f"on {self.device}")

    def submit(self, job: Job) -> tuple[cf.Future, str]:
        threads = max(1, int(self.cpus))
        ref = self.task.remote(Job(job.config.replace(device=self.device), job.fingerprint,
                                   self.data_dir, threads, job.checkpoint_every_s))
        future = ref.future()
        self.refs[future] = ref
        return future, self.device

    def done(self, device: str) -> None:
        pass

    def stop(self) -> None:
        for ref in self.refs.values():
            self.ray.cancel(ref, force=True)
        self.close()

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def _cause(err: BaseException) -> BaseException:
    """The worker's own exception inside a Ray task error."""
    return getattr(err, "cause", None) or err


# --------------------------------------------------------------------------------------------
# the parent's loop


def expected_seconds(store: ResultsStore, configs: list[RunConfig]) -> dict[str, float | None]:
    """Each config's expected training + evaluation seconds (by label), by the one cost rule
    (:func:`mmlrepro.runtimes.estimate_minutes`); None when the store holds nothing alike."""
    from mmlrepro.runtimes import estimate_minutes

    minutes = estimate_minutes(configs, store.records())
    return {c.label(): None if m is None else m * 60 for c, m in zip(configs, minutes, strict=True)}


def _eta(left: list[RunConfig], expected: dict[str, float | None], walls: list[float], slots: int) -> str:
    """Seconds still to go at ``slots`` runs at a time, from the stored timings (a run with
    none alike counts as the mean wall time of this session's runs)."""
    fallback = sum(walls) / len(walls) if walls else None
    each = [expected.get(c.label()) or fallback for c in left]
    if any(e is None for e in each):
        return "ETA unknown (no stored run alike yet)"
    return f"ETA {sum(each) / max(1, min(slots, len(left))) / 60:.1f} min"


def _twin_key(config: RunConfig, fingerprint: str) -> str | None:
    """The key of the "N" twin an early-stopped run can be read off, or None."""
    if config.selection != "early_stop" or config.lr_reduce:
        return None
    return config.replace(selection="paper").key(fingerprint)


def _next_startable(pending: deque[RunConfig], running: dict[cf.Future, _Running],
                    sources: dict[str, Dataset]) -> RunConfig | None:
    """The first pending run that is not an early-stopped run whose twin is pending or running."""
    busy = {r.key for r in running.values()} | {c.key(sources[c.dataset].fingerprint) for c in pending}
    return next((c for c in pending if _twin_key(c, sources[c.dataset].fingerprint) not in busy), None)


@dataclass
class _Running:
    config: RunConfig
    key: str
    device: str
    started: float


def train_parallel(todo: list[RunConfig], store: ResultsStore, sources: dict[str, Dataset],
                   workers: Workers, *, device: str | None, data_dir: str | None,
                   save: Callable[[RunResult], None], stored: Callable[[RunConfig], bool],
                   max_minutes: float | None,
                   checkpoint_every_s: float, log: Callable[[str], None],
                   done: list[RunConfig]) -> None:
    """Train ``todo`` with ``workers``, each finished config appended to ``done``; see the module.

    ``save(result)`` stores a finished run; ``stored(config)`` says whether the store holds a
    run now (or can read it off its stored twin), checked again just before it starts. An
    early-stopped run waits while its "N" twin is pending or in flight (it may be read off it).
    Raises :class:`RunsFailed` when runs failed, :class:`RunInterrupted` on Ctrl-C."""
    leases = Leases(store.root)
    pool: LocalPool | RayPool = (RayPool(workers, data_dir) if workers.executor == "ray"
                                 else LocalPool(workers, device))
    log(f"training with {pool.describe()}")
    expected = expected_seconds(store, todo)
    pending, running = deque(todo), {}
    failures: list[tuple[RunConfig, str]] = []
    skipped: list[str] = []
    walls: list[float] = []
    start = time.perf_counter()
    total = len(todo)
    try:
        with leases.heartbeat():
            while pending or running:
                while pending and len(running) < pool.slots:
                    elapsed = time.perf_counter() - start
                    if max_minutes is not None and walls and elapsed + sum(walls) / len(walls) > max_minutes * 60:
                        log(f"time budget of {max_minutes} min reached: {len(pending)} runs not started, left for later")
                        pending.clear()
                        break
                    config = _next_startable(pending, running, sources)
                    if config is None:   # only early-stopped runs whose twins are in flight
                        break
                    pending.remove(config)
                    source = sources[config.dataset]
                    key = config.key(source.fingerprint)
                    got, note = leases.acquire(key)
                    if not got:
                        skipped.append(config.label())
                        log(f"skipped {config.label()} #{key}: its lease is held by {note}")
                        continue
                    if stored(config):   # by another process since, or read off its twin now
                        leases.release(key)
                        continue
                    if note:
                        log(f"{config.label()} #{key}: {note}; its checkpoint, if any, resumes")
                    future, dev = pool.submit(Job(config, source.fingerprint, data_dir,
                                                  checkpoint_every_s=checkpoint_every_s))
                    running[future] = _Running(config, key, dev, time.perf_counter())
                    log(f"started {config.label()} #{key} on {dev}: {config.settings()}")
                if not running:
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    _collect(future, running.pop(future), pool, leases, save, done, failures, walls, log)
                left = list(pending) + [r.config for r in running.values()]
                log(f"[{len(done)}/{total} done, {len(failures)} failed] "
                    f"{(time.perf_counter() - start) / 60:.1f} min elapsed, {_eta(left, expected, walls, pool.slots)}")
    except KeyboardInterrupt:
        for future in list(running):   # keep what finished in the meantime
            if future.done():
                _collect(future, running.pop(future), pool, leases, save, done, failures, walls, log)
        pool.stop()
        raise RunInterrupted(f"interrupted with {len(running)} run(s) in flight, whose checkpoints are "
                             "kept (the same command resumes them)") from None
    except BaseException:   # e.g. the store refused a result: no worker is left running
        pool.stop()
        raise
    pool.close()
    if skipped:
        log(f"{len(skipped)} run(s) skipped: another process is training them")
    if failures:
        lines = "; ".join(f"{label}: {why}" for label, why in ((c.label(), w) for c, w in failures))
        raise RunsFailed(f"{len(failures)} of {total} runs failed ({lines}); the {len(done)} that "
                         "finished are stored, and the same command retries the failed ones")


def _collect(future: cf.Future, item: _Running, pool: LocalPool | RayPool, leases: Leases,
             save: Callable[[RunResult], None], done: list[RunConfig],
             failures: list[tuple[RunConfig, str]], walls: list[float], log: Callable[[str], None]) -> None:
    """Store a finished run's result (or name its failure) and release its lease."""
    pool.done(item.device)
    wall = time.perf_counter() - item.started
    try:
        result = future.result()
    except cf.CancelledError:
        leases.release(item.key)
        return
    except Exception as err:   # the worker's error, or its death
        cause = _cause(err)
        why = (f"its worker process died ({describe_error(cause)})"
               if isinstance(cause, cf.process.BrokenProcessPool) else
               f"{type(cause).__name__}: {describe_error(cause)}")
        failures.append((item.config, why))
        leases.release(item.key)
        log(f"FAILED {item.config.label()} #{item.key}: {why}")
        return
    try:
        save(result)
    finally:
        leases.release(item.key)
    done.append(item.config)
    walls.append(wall)
    log(f"done {item.config.label()}: recall@20 {result.best['recall@20']:.4f} ndcg@20 "
        f"{result.best['ndcg@20']:.4f} (best epoch {result.best['epoch']}) in {wall:.0f} s on {result.device}")
