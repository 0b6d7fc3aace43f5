"""Many runs at once (issue 19): worker pools, Ray, leases in the store, kill and resume.

The equivalence tests train the smoke profile of ``table3`` on Gowalla (7 runs of 200 users and
2 epochs) one after the other, with ``jobs=2`` worker processes and as Ray tasks, and compare
the stored records bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlrepro.cli import main
from mmlrepro.config import RunConfig
from mmlrepro.jobs import RAY_HINT, Workers, expected_seconds
from mmlrepro.leases import Leases, stale_reason
from mmlrepro.results import ResultsStore
from mmlrepro.runner import run, run_missing

ROOT = Path(__file__).resolve().parents[1]
PLAN = dict(groups=["table3"], profile="smoke", datasets=["gowalla"])
N_RUNS = 7   # table3 [smoke] on Gowalla


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------------------------
# leases


def test_a_lease_is_held_once_released_by_its_owner_and_taken_over_when_stale(tmp_path):
    mine, other = Leases(tmp_path), Leases(tmp_path)
    assert mine.acquire("k1") == (True, "")
    got, whose = other.acquire("k1")                  # a live pid on this host holds it
    assert not got and f"pid {os.getpid()}" in whose
    other.release("k1")                               # not other's to release
    assert mine.path("k1").exists()
    mine.release("k1")
    assert not mine.path("k1").exists()

    lease = {"key": "k2", "host": os.uname().nodename, "pid": _dead_pid(), "token": "x",
             "heartbeat": time.time()}
    mine.folder.joinpath("k2.json").write_text(json.dumps(lease))
    got, note = other.acquire("k2")
    assert got and "is gone" in note and "took over" in note
    assert mine.beat() == [] and other.beat() == []

    far = {"key": "k3", "host": "elsewhere", "pid": 1, "token": "y", "heartbeat": time.time()}
    mine.folder.joinpath("k3.json").write_text(json.dumps(far))
    assert not mine.acquire("k3")[0]                  # another host, recent heartbeat: held
    assert stale_reason({**far, "heartbeat": time.time() - 400}, time.time()).startswith("no heartbeat")
    mine.folder.joinpath("k3.json").write_text(json.dumps({**far, "heartbeat": time.time() - 400}))
    assert mine.acquire("k3")[0]


def test_a_live_reservation_left_by_older_code_in_claims_is_honoured(tmp_path):
    """Older code kept its reservations in ``<store>/claims/``: a live one there is held, a
    stale one is taken over (and removed); a store without that folder never gets one."""
    mine = Leases(tmp_path)
    assert mine.acquire("k0")[0] and not (tmp_path / "claims").exists()
    legacy = tmp_path / "claims"
    legacy.mkdir()
    live = {"key": "k1", "host": "elsewhere", "pid": 4242, "token": "old", "heartbeat": time.time()}
    legacy.joinpath("k1.json").write_text(json.dumps(live))
    got, whose = mine.acquire("k1")
    assert not got and "elsewhere pid 4242" in whose and not mine.path("k1").exists()

    dead = {"key": "k2", "host": os.uname().nodename, "pid": _dead_pid(), "token": "old", "heartbeat": time.time()}
    legacy.joinpath("k2.json").write_text(json.dumps(dead))
    got, note = mine.acquire("k2")
    assert got and "took over the stale lease" in note and "is gone" in note
    assert mine.path("k2").exists() and not legacy.joinpath("k2.json").exists()


def test_a_lease_taken_over_is_reported_lost_by_the_old_holder(tmp_path):
    old, new = Leases(tmp_path), Leases(tmp_path, stale_s=0.0)
    assert old.acquire("k")[0]
    time.sleep(0.01)
    assert new.acquire("k")[0]                        # old's heartbeat counts as stale for new
    assert old.beat() == ["k"] and "k" not in old.held
    old.release("k")
    assert new.path("k").exists()                     # the new holder's lease is left alone
    with new.heartbeat(every_s=0.01):
        time.sleep(0.05)
    assert not new.path("k").exists()                 # released when the heartbeat context ends


# --------------------------------------------------------------------------------------------
# settings, checked before any data is loaded


@pytest.mark.parametrize("args, words", [
    (["--jobs", "0"], "jobs must be"),
    (["--gpus-per-run", "0.5"], "executor 'ray' only"),
    (["--address", "auto"], "executor 'ray' only"),
    (["--threads-per-job", "2"], "apply to jobs > 1"),
    (["--devices", "cpu"], "apply to jobs > 1"),
    (["--jobs", "2", "--devices", "cpu", "--device", "cpu"], "not both"),
    (["--jobs", "2", "--devices", "mps"], "MPS"),
    (["--jobs", "2", "--threads-per-job", "0"], "threads_per_job"),
    (["--executor", "ray", "--device", "cpu"], "does not apply to executor 'ray'"),
    (["--executor", "ray", "--jobs", "2", "--devices", "cpu"], "executor 'local'"),
])
def test_bad_worker_settings_are_one_line_before_compute(args, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mmlrepro.runner.load_run_dataset", lambda *a, **k: pytest.fail("data loaded"))
    code = main(["reproduce", "table3", "--profile", "smoke", "--no-compare",
                 "--results-dir", str(tmp_path / "store"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err


def test_ray_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    with pytest.raises(ValueError, match=RAY_HINT.replace("[", r"\[").replace("]", r"\]")):
        Workers(executor="ray").check(None)


def test_expected_seconds_come_from_stored_runs_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    config = RunConfig(dataset="synthetic:100:200", loss="bpr", n_negatives=5, epochs=1, device="cpu")
    result = run(config, results_dir=tmp_path, log=None)
    store = ResultsStore(tmp_path)
    alike, other = config.replace(seed=3, loss="ccl"), config.replace(model="simplex")
    got = expected_seconds(store, [config, alike, other])
    # minutes * 60 round-trips the stored seconds through a division: equal up to float rounding
    assert got[config.label()] == pytest.approx(result.timings["train_s"] + result.timings["eval_s"], rel=1e-12)
    assert got[alike.label()] == got[config.label()]     # same profile, dataset and model
    assert got[other.label()] is None


# --------------------------------------------------------------------------------------------
# equivalence on the real data


def _records(root: Path) -> dict[str, dict]:
    """Each stored record without what may differ between equal runs: timings, provenance and
    the device (a label: a worker's config names the device it was given; each epoch names the
    device and thread count it trained on)."""
    out = {}
    for path in sorted((root / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        for name in ("timings", "provenance", "device"):
            record.pop(name)
        record["config"].pop("device")
        for part in ("history", "best", "last"):
            rows = record[part] if part == "history" else [record[part]]
            for row in rows:
                for name in ("train_s", "eval_s", "device"):
                    row.pop(name, None)
        out[path.stem] = record
    return out


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict[str, dict]:
    """The plan trained one run after the other in this process (today's behaviour)."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMLREPRO_CHECKPOINT_DIR", str(root / "ckpt"))
        mp.setenv("TQDM_DISABLE", "1")
        done = run_missing(**PLAN, results_dir=root / "store", log=None)
    assert len(done) == N_RUNS
    return _records(root / "store")


@pytest.mark.real_data
def test_two_worker_processes_store_the_same_runs_bit_for_bit(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    lines: list[str] = []
    done = run_missing(**PLAN, results_dir=tmp_path / "store", jobs=2, log=lines.append)
    assert len(done) == N_RUNS
    assert _records(tmp_path / "store") == reference
    assert sum(line.startswith("done ") for line in lines) == N_RUNS
    assert f"[{N_RUNS}/{N_RUNS} done, 0 failed]" in lines[-1]
    assert not list((tmp_path / "store" / "leases").glob("*.json"))   # every lease released


@pytest.mark.real_data
def test_ray_tasks_store_the_same_runs_bit_for_bit(reference, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mmlrepro[ray]')")
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))   # a local Ray started on the spot passes it on
    lines: list[str] = []
    done = run_missing(**PLAN, results_dir=tmp_path / "store", log=lines.append,
                       workers=Workers(executor="ray", cpus_per_run=1))
    assert not ray.is_initialized()                 # the Ray started here is shut down
    assert len(done) == N_RUNS
    assert "Ray tasks of 1 CPU(s) and 0 GPU(s)" in "\n".join(lines)
    assert _records(tmp_path / "store") == reference


def _as_in_a_terminal() -> None:
    """Ctrl-C's default disposition in the child: a shell without job control starts background
    commands (``make test &``) with SIGINT ignored, and Python keeps an inherited SIG_IGN."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _reproduce(store: Path, ckpt: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMLREPRO_CHECKPOINT_DIR": str(ckpt), "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmlrepro", "reproduce", "table3", "--profile", "smoke",
                             "--datasets", "gowalla", "--no-compare", "--results-dir", str(store), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_as_in_a_terminal)


@pytest.mark.real_data
def test_two_reproduce_processes_on_one_store_train_each_run_once(reference, tmp_path):
    store = tmp_path / "store"
    procs = [_reproduce(store, tmp_path / "ckpt"), _reproduce(store, tmp_path / "ckpt", "--jobs", "2")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = re.findall(r"^(?:training|started) \S+ \[smoke\] #([0-9a-f]{16})", "\n".join(outputs), re.M)
    assert sorted(trained) == sorted(reference), outputs   # every run once, none twice
    assert _records(store) == reference
    assert not (store / "set_aside").exists()


_KILLABLE = """
import sys
from mmlrepro.runner import run, run_missing
run_missing(["table3"], "smoke", datasets=["gowalla"], results_dir=sys.argv[1], jobs=2,
            checkpoint_every_s=0)
"""


@pytest.mark.real_data
def test_a_killed_reproduce_resumes_its_checkpoints_on_the_next_run(reference, tmp_path):
    """SIGKILL the parent and its workers once a checkpoint exists: the dead process's leases
    are stale (pid gone), taken over by the next run, whose runs resume and match bit for bit."""
    store, ckpt = tmp_path / "store", tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMLREPRO_CHECKPOINT_DIR": str(ckpt), "TQDM_DISABLE": "1"}
    first = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(store)], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not list(ckpt.glob("*.pt")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = {p.stem for p in ckpt.glob("*.pt")}
    assert kept, "no checkpoint was left to resume"
    assert kept <= {p.stem for p in (store / "leases").glob("*.json")}   # the dead process's leases
    second = subprocess.run([sys.executable, "-c", _KILLABLE, str(store)], env=env, capture_output=True,
                            text=True, timeout=120)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log
    for key in kept:
        assert f"#{key}: took over the stale lease" in log and "is gone" in log
    assert log.count("resumed from") >= len(kept)
    assert _records(store) == reference
    assert not list(ckpt.glob("*.pt"))


@pytest.mark.real_data
def test_ctrl_c_stops_the_workers_keeps_what_finished_and_says_how_to_resume(reference, tmp_path):
    proc = _reproduce(tmp_path / "store", tmp_path / "ckpt", "--jobs", "2")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("done "):   # one run stored, others in flight
            break
    os.killpg(proc.pid, signal.SIGINT)   # what a terminal's Ctrl-C does
    rest = proc.communicate(timeout=60)[0]
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "interrupted:" in out and "the same command trains only the runs still missing" in out
    stored = _records(tmp_path / "store")
    assert stored and all(stored[k] == reference[k] for k in stored)
    assert not list((tmp_path / "store" / "leases").glob("*.json"))
    deadline = time.monotonic() + 10   # no worker left (multiprocessing's resource tracker exits last)
    while subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "a worker outlived the interrupted reproduce"
        time.sleep(0.1)


def test_a_failing_run_is_named_the_others_are_stored(tmp_path, monkeypatch):
    """A worker whose data differs from the driver's fails its run with the worker named; the
    other run is stored and :class:`RunsFailed` lists the failure (the CLI exits 1)."""
    from mmlrepro.data import synthetic
    from mmlrepro.jobs import RunsFailed, train_parallel

    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    good = RunConfig(dataset="synthetic:100:200", loss="bpr", n_negatives=5, epochs=1, device="cpu")
    bad = good.replace(dataset="synthetic:120:200", seed=1)   # its own key
    sources = {good.dataset: synthetic(100, 200), bad.dataset: synthetic(100, 200)}   # not bad's data
    store, lines, done = ResultsStore(tmp_path / "store"), [], []
    with pytest.raises(RunsFailed, match=r"1 of 2 runs failed \(synthetic:120:200.*worker .*pid \d+.*fingerprint"):
        train_parallel([bad, good], store, sources, Workers(jobs=2), device=None, data_dir=None,
                       save=store.put, stored=lambda c: False, max_minutes=None, checkpoint_every_s=30.0, log=lines.append,
                       done=done)
    assert done == [good], lines
    assert store.contains(good, sources[good.dataset].fingerprint)
    assert any(line.startswith(f"FAILED {bad.label()}") for line in lines)


def test_the_cli_exits_1_naming_the_failed_runs(tmp_path, capsys, monkeypatch):
    from mmlrepro.jobs import RunsFailed

    def failing(*args, **kwargs):
        raise RunsFailed("1 of 7 runs failed (gowalla/mf/bpr: boom); the 6 that finished are stored")

    monkeypatch.setattr("mmlrepro.runner.run_missing", failing)
    code = main(["reproduce", "table3", "--profile", "smoke", "--no-compare", "--jobs", "2",
                 "--results-dir", str(tmp_path)])
    assert code == 1 and capsys.readouterr().err.strip() == (
        "error: 1 of 7 runs failed (gowalla/mf/bpr: boom); the 6 that finished are stored")


@pytest.mark.real_data
def test_early_stopped_runs_wait_for_their_twins_and_are_read_off_them(data_dir, tmp_path, monkeypatch):
    """Table 2 [smoke]: with two workers, the four "Y" runs are not trained but read off their
    "N" twins as each twin is stored, as in one process."""
    from mmlrepro.catalogue import catalogue_key, plan

    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    lines: list[str] = []
    run_missing(["table2"], "smoke", datasets=["gowalla"], results_dir=tmp_path, jobs=2, log=lines.append)
    planned = plan(["table2"], "smoke", 1, ["gowalla"])
    started = [line for line in lines if line.startswith("started ")]
    assert len(started) == sum(c.selection == "paper" for c in planned) == 4
    held = {r["key"] for r in ResultsStore(tmp_path).records()}
    assert {catalogue_key(c) for c in planned} <= held
