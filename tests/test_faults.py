"""Bad input and faults (issue 15): one line naming what is wrong, before any compute, no
partial file; Ctrl-C says what was kept; a finished run is never lost to a late error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from datafiles import write_pair

import mmlrepro.data.sources as data_sources
import mmlrepro.files as files_mod
import mmlrepro.runner as runner_mod
import mmlrepro.train as train_mod
from mmlrepro.checkpoint import default_checkpoint_dir
from mmlrepro.cli import main
from mmlrepro.config import RunConfig
from mmlrepro.data import DataError, synthetic
from mmlrepro.files import OutputError, check_writable, describe_error
from mmlrepro.linear import run_linear_group
from mmlrepro.preflight import check_negatives, step_bytes
from mmlrepro.results import ResultsStore, RunResult, StoreError
from mmlrepro.runner import run
from mmlrepro.train import train

SYN = ["--dataset", "synthetic:100:200", "--epochs", "1", "--negatives", "5", "--device", "cpu"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a training step runs or anything is downloaded."""
    monkeypatch.setattr(train_mod.ExactStep, "__call__", lambda *a, **k: pytest.fail("a step ran"))
    monkeypatch.setattr(data_sources, "download_file", lambda *a, **k: pytest.fail("a download was attempted"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A blocking file, checkpoints in tmp_path, the real data folder left as it is."""
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# every CLI example of the issue: exit 2, one line naming the thing, no step, nothing written


def _few_items(tmp: Path) -> Path:  # 30 items < K = 50
    return write_pair(tmp / "few", "".join(f"{u} {u % 30} {(u + 1) % 30} {(u + 7) % 30}\n" for u in range(40)),
                      "".join(f"{u} {(u + 3) % 30}\n" for u in range(40)))


def _cuda_cases() -> list:
    return [pytest.param(args, words, marks=NO_GPU, id=" ".join(args[:1] + args[-2:]))
            for args, words in (
                (["train", *SYN, "--device", "cuda"], ["'cuda'", "no CUDA GPU"]),
                (["reproduce", "table3", "--profile", "smoke", "--device", "cuda"], ["'cuda'", "no CUDA GPU"]),
                (["check", "--device", "cuda"], ["'cuda'", "no CUDA GPU"]),
            )]


CASES = [  # (argv, words of the message); {tmp} is the test's folder, {store} the results dir
    (["train", *SYN, "--results-dir", "{tmp}/afile"], ["results store {tmp}/afile is a file"]),
    (["train", *SYN, "--device", "cpu:abc"], ["'cpu:abc'", "RunConfig.device"]),
    (["train", *SYN, "--device", "mps"], ["'mps'", "MPS"]),
    (["check", "--device", "foo"], ["'foo'"]),
    (["reproduce", "table3", "--profile", "smoke", "--datasets", "movielens"], ["'movielens'"]),
    (["reproduce", "table3", "--profile", "smoke", "--max-minutes", "-5"], ["max_minutes", "-5"]),
    (["reproduce", "table3", "--profile", "smoke", "--seeds", "0"], ["seed", "0"]),
    (["report", "--output", "{tmp}", "--figures-dir", "{tmp}/fig"], ["report file {tmp} is a folder"]),
    (["report", "--results-dir", "{tmp}/afile", "--output", "{tmp}/R.md", "--figures-dir", "{tmp}/fig"],
     ["results store {tmp}/afile is a file"]),
    (["report", "--output", "{tmp}/R.md", "--figures-dir", "{tmp}/afile"], ["figures folder {tmp}/afile"]),
    (["datasets", "--data-dir", "{tmp}/nowhere"], ["data_dir={tmp}/nowhere does not exist"]),
    (["datasets", "movielens"], ["'movielens' is not a known dataset"]),
    (["train", "--dataset", "synthetic:abc"], ["'synthetic:abc'", "'abc' is not a whole number"]),
    (["train", "--dataset", "synthetic:10:3"], ["'synthetic:10:3'", "ITEMS >= 6"]),
    (["train", "--dataset", "synthetic:1:2:3"], ["'synthetic:1:2:3'", "3 sizes"]),
    (["train", "--dataset", "synthetic:-5"], ["'synthetic:-5'", "'-5'"]),
    (["train", "--dataset", "synthetic:99999:99999"], ["'synthetic:99999:99999'", "10,000,000"]),
    (["train", "--dataset", "synthetic_mine"], ["'synthetic_mine' is not a known dataset", "no folder"]),
    (["train", "--dataset", "{tmp}/huge"], ["{tmp}/huge/train.txt, line 2:", "100000000000000 is out of range"]),
    (["train", "--dataset", "{tmp}/dirf"], ["{tmp}/dirf/train.txt: is a folder"]),
    (["train", "--dataset", "{tmp}/few", "--epochs", "1", "--device", "cpu"], ["has 30 items, too few for K = 50"]),
    (["train", *SYN[:-4], "--negatives", "1000000", "--device", "cpu"], ["RunConfig.n_negatives", "1,000,000",
                                                                        "100,000"]),
    (["train", *SYN[:-4], "--negatives", "0", "--device", "cpu"], ["RunConfig.n_negatives", "got 0"]),
    (["train", *SYN, "--param", "margins"], ["--param: expected NAME=VALUE, got 'margins'"]),
    (["train", *SYN, "--user-subsample", "5000"], ["RunConfig.user_subsample: 5000 >= the 100 users"]),
    (["reproduce", "linear", "--profile", "smoke", "--datasets", "gowalla", "--results-dir", "{tmp}/rl"],
     ["linear results folder {tmp}/rl/linear", "is a file"]),
    (["notebooks", "--output-dir", "{tmp}/afile", "--no-train"], ["notebook output folder {tmp}/afile"]),
    (["notebooks", "-p", "seeds"], ["-p/--param: expected NAME=VALUE"]),
    *_cuda_cases(),
]


@pytest.mark.parametrize("args, words", [pytest.param(*c, id=" ".join(c[0])[:60]) if type(c) is tuple else c
                                         for c in CASES])
def test_bad_input_is_one_line_before_compute(args, words, sandbox, no_compute, capsys):
    tmp = sandbox
    write_pair(tmp / "huge", "0 1 2\n1 100000000000000\n", "0 1\n")
    (tmp / "dirf" / "train.txt").mkdir(parents=True)
    (tmp / "dirf" / "test.txt").write_text("0 1\n")
    _few_items(tmp)
    (tmp / "rl").mkdir()
    (tmp / "rl" / "linear").write_text("x")
    before = files_under(tmp)
    argv = [a.format(tmp=tmp) for a in args]
    if argv[0] in ("train", "reproduce", "report") and "--results-dir" not in argv:
        argv += ["--results-dir", str(tmp / "store")]
    assert main(argv) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word.format(tmp=tmp) in err
    assert files_under(tmp) == before  # no store, no checkpoint, no partial file


def test_results_dir_that_cannot_be_written_fails_before_compute(sandbox, no_compute, capsys, monkeypatch):
    """A read-only results folder (simulated: root writes anywhere) is refused before any step."""
    locked = sandbox / "locked"
    locked.mkdir()
    mkstemp = tempfile.mkstemp

    def deny(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(locked):
            raise PermissionError(13, "Permission denied", str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files_mod.tempfile, "mkstemp", deny)
    assert main(["train", *SYN, "--results-dir", str(locked)]) == 2
    err = one_error_line(capsys)
    assert f"results store {locked}/runs is not writable" in err and "Permission denied" in err
    assert files_under(locked) == []
    assert main(["report", "--output", str(locked / "R.md"), "--results-dir", str(sandbox / "store"),
                 "--figures-dir", str(sandbox / "fig")]) == 2
    assert f"{locked}" in one_error_line(capsys)


def test_checkpoint_dir_that_is_a_file_fails_before_compute(sandbox, no_compute, capsys, monkeypatch):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(sandbox / "afile"))
    for argv in (["train", *SYN], ["reproduce", "table3", "--profile", "smoke"]):
        assert main([*argv, "--results-dir", str(sandbox / "store")]) == 2
        assert f"checkpoint folder {sandbox}/afile" in one_error_line(capsys)
    assert not (sandbox / "store").exists()


def test_an_empty_checkpoint_dir_variable_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", "")
    assert default_checkpoint_dir() == tmp_path / ".cache" / "mmlrepro" / "checkpoints"  # not the cwd


@pytest.mark.parametrize("where", ["MMLREPRO_DATA_DIR", "MMLREPRO_CACHE_DIR"])
def test_data_and_cache_folders_from_the_environment_are_named(where, sandbox, no_compute, capsys, monkeypatch):
    """A typo in MMLREPRO_DATA_DIR names that folder (no download); a cache folder that is a file too."""
    monkeypatch.delenv("MMLREPRO_DATA_DIR", raising=False)
    value = sandbox / ("typo" if where == "MMLREPRO_DATA_DIR" else "afile")
    monkeypatch.setenv(where, str(value))
    for argv in (["datasets", "gowalla"], ["train", "--dataset", "gowalla", "--results-dir", str(sandbox / "s")]):
        assert main(argv) == 2
        err = one_error_line(capsys)
        assert f"{where}={value}" in err
        assert ("does not exist" if where == "MMLREPRO_DATA_DIR" else "cannot hold the cache") in err
    assert not (sandbox / "s").exists()


def test_an_unreadable_data_file_is_named(sandbox, no_compute, capsys, monkeypatch):
    folder = write_pair(sandbox / "locked", "0 1 2\n1 2 3\n", "0 3\n1 0\n")
    read_bytes = Path.read_bytes

    def deny(self):
        if self == folder / "train.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert main(["train", "--dataset", str(folder), "--results-dir", str(sandbox / "s")]) == 2
    assert f"{folder / 'train.txt'}: cannot be read (Permission denied)" in one_error_line(capsys)


def test_oserrors_are_one_line_naming_the_path():
    err = FileExistsError(17, "File exists", "/some/where")
    assert describe_error(err) == "/some/where: File exists"
    assert describe_error(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == "/a -> /b: Invalid cross-device link"
    assert describe_error(KeyboardInterrupt()) == "KeyboardInterrupt"


# --------------------------------------------------------------------------------------------
# the Python API: RunConfig fields, the negatives rule, data with fewer items than K


@pytest.mark.parametrize("field, value", [
    ("user_subsample", True), ("dropout", "0.1"), ("reg_lambda", "1e-8"), ("device", None),
    ("device", "cuda:x"), ("n_negatives", 2.5), ("lr", "0.01"), ("grad_clip", "10"), ("seed", "7"),
])
def test_runconfig_rejects_wrong_types_naming_the_field(field, value):
    with pytest.raises(ValueError) as info:
        RunConfig(dataset="synthetic", **{field: value})
    assert f"RunConfig.{field}" in str(info.value) and repr(value) in str(info.value)


def test_negatives_beyond_the_item_count_are_allowed(tmp_path):
    """SPEC §4 draws with replacement: N = 100 on 60 items trains."""
    config = RunConfig(dataset="synthetic:40:60", n_negatives=100, epochs=1, device="cpu")
    assert len(train(config, checkpoint_dir=tmp_path, log=None).history) == 1


def test_negatives_that_do_not_fit_are_refused_with_the_numbers(monkeypatch):
    cpu = torch.device("cpu")
    config = RunConfig(dataset="synthetic", n_negatives=50_000, batch_size=256, dim=64)
    assert step_bytes(config, n_rows=10_000) == 256 * 50_000 * (16 * 64 + 8)
    assert step_bytes(config, n_rows=100) == 100 * 50_000 * (16 * 64 + 8)  # a batch is at most the data
    monkeypatch.setattr("mmlrepro.preflight.device_memory", lambda device: 8 * 2**30)
    with pytest.raises(ValueError) as info:
        check_negatives(config, 10_000, cpu)
    assert "RunConfig.n_negatives: 50,000 negatives x 256 rows a batch x dim 64 need about 12.3 GiB" in str(info.value)
    assert "8.0 GiB of cpu memory" in str(info.value)
    check_negatives(config.replace(n_negatives=800), 10_000, cpu)   # the paper's largest N fits
    with pytest.raises(ValueError, match="100,001 negatives is over the 100,000"):
        check_negatives(config.replace(n_negatives=100_001), 10, cpu)


def test_too_few_items_for_k_is_refused_before_any_step(tmp_path, no_compute):
    small = synthetic(50, 40, seed=1)
    config = RunConfig(dataset="synthetic:50:40", epochs=1, n_negatives=5, device="cpu")
    with pytest.raises(DataError, match="has 40 items, too few for K = 50"):
        train(config, dataset=small, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(DataError, match="too few for K = 50"):
        run(config, dataset=small, results_dir=tmp_path / "store", checkpoint_dir=tmp_path / "ck", log=None)
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


def test_the_linear_group_checks_its_folder_and_device_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setattr("mmlrepro.linear.runs.linear_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    (tmp_path / "linear").write_text("x")
    with pytest.raises(OutputError, match="linear results folder .* is a file"):
        run_linear_group("smoke", results_dir=tmp_path, datasets=["gowalla"], log=None)
    with pytest.raises(ValueError, match="'cpu:abc'"):
        run_linear_group("smoke", results_dir=tmp_path / "ok", datasets=["gowalla"], device="cpu:abc", log=None)


# --------------------------------------------------------------------------------------------
# broken checkpoints


@pytest.mark.parametrize("content, why", [
    (b"", "is broken"), (b"\x80\x02garbage", "is broken"), ("foreign", "belongs to another run"),
    ("list", "belongs to another run"),
])
def test_a_broken_or_foreign_checkpoint_is_named_set_aside_and_the_run_starts_over(tmp_path, content, why):
    config = RunConfig(dataset="synthetic:100:200", epochs=1, n_negatives=5, device="cpu")
    path = tmp_path / f"{config.key(synthetic(100, 200).fingerprint)}.pt"
    if content == "foreign":
        torch.save({"key": "0123456789abcdef", "history": []}, path)
    elif content == "list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    lines: list[str] = []
    result = train(config, checkpoint_dir=tmp_path, log=lines.append)
    assert len(result.history) == 1
    assert any(str(path) in line and why in line and "starts over" in line for line in lines)
    assert not path.exists() and len(list(tmp_path.glob("*.set-aside-*"))) == 1


# --------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_during_train_keeps_the_checkpoint_and_the_same_command_resumes(sandbox, capsys, monkeypatch):
    real_train = runner_mod.train

    def interrupted_after_epoch_1(config, **kwargs):
        def stop(epoch, record):
            raise KeyboardInterrupt
        return real_train(config, **kwargs, checkpoint_every_s=0, on_epoch_end=stop)

    argv = ["train", *SYN[:3], "2", *SYN[4:], "--results-dir", str(sandbox / "store")]
    monkeypatch.setattr(runner_mod, "train", interrupted_after_epoch_1)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("interrupted: synthetic:100:200/mf/mml/N5/paper")
    assert "the checkpoint of epoch 1 is kept at" in err and "the same command resumes it" in err
    kept = list((sandbox / "ckpt").glob("*.pt"))
    assert len(kept) == 1 and str(kept[0]) in err
    assert not (sandbox / "store" / "runs").exists() or not any((sandbox / "store" / "runs").iterdir())

    monkeypatch.setattr(runner_mod, "train", real_train)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "resumed from" in captured.err and "2 epochs:" in captured.out
    assert not list((sandbox / "ckpt").glob("*.pt")) and len(list((sandbox / "store" / "runs").glob("*.json"))) == 1


def test_ctrl_c_before_a_run_starts_says_nothing_was_half_written(sandbox, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner_mod, "load_run_dataset", interrupt)
    assert main(["train", *SYN, "--results-dir", str(sandbox / "store")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("interrupted: stopped by Ctrl-C; every run that finished before it is stored, "
                   "and no file was left half-written")


def test_sigterm_during_train_stops_like_ctrl_c_and_releases_the_lease(tmp_path):
    """``kill`` or a scheduler's pre-emption (SIGTERM) once a checkpoint is written (every 30 s):
    exit 143, one line naming the kept checkpoint, no traceback, and the run's lease released at
    once rather than left to go stale."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TQDM_DISABLE": "1",
           "MMLREPRO_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    argv = [sys.executable, "-m", "mmlrepro", "train", *SYN[:3], "100000", *SYN[4:],
            "--results-dir", str(tmp_path / "store")]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(300, proc.kill)   # never hang the suite if the line never comes
    guard.start()
    seen = []
    for line in proc.stdout:   # the run has taken its lease and started training
        seen.append(line)
        if line.startswith("training "):
            break
    assert list((tmp_path / "store" / "leases").glob("*.json")), seen
    while not list((tmp_path / "ckpt").glob("*.pt")) and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    guard.cancel()
    lines = err.strip().splitlines()
    assert proc.returncode == 143, seen + lines
    assert len(lines) == 1 and lines[0].startswith("interrupted: synthetic:100:200/mf/mml/N5/paper"), lines
    kept = list((tmp_path / "ckpt").glob("*.pt"))
    assert len(kept) == 1 and str(kept[0]) in lines[0] and "the same command resumes it" in lines[0]
    assert not list((tmp_path / "store" / "leases").glob("*.json"))
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


class _Stop(Exception):
    pass


def test_ctrl_c_during_reproduce_says_what_is_stored_and_the_same_command_goes_on(sandbox, capsys, monkeypatch):
    monkeypatch.setattr(runner_mod, "load_run_dataset", lambda config, data_dir=None: synthetic(300, 400))
    real_train = runner_mod.train
    calls = []

    def second_run_interrupted(config, **kwargs):
        calls.append(config)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(config, **kwargs)

    monkeypatch.setattr(runner_mod, "train", second_run_interrupted)
    store = sandbox / "store"
    argv = ["reproduce", "table3", "--profile", "smoke", "--device", "cpu", "--no-compare",
            "--results-dir", str(store)]
    assert main(argv) == 130
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("interrupted: interrupted between runs; 1 of the ")
    assert f"had finished before it (stored in {store})" in err and "the same command trains only" in err
    assert len(list((store / "runs").glob("*.json"))) == 1

    def stop(config, **kwargs):
        raise _Stop
    monkeypatch.setattr(runner_mod, "train", stop)
    with pytest.raises(_Stop):
        main(argv)
    assert ", 1 already in" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# a finished run is never lost to a late error


def _failing_put(self, result, replace=False):
    raise OSError(28, "No space left on device", str(self.runs_dir / f"{result.key}.json"))


def test_a_finished_run_that_cannot_be_stored_is_rescued_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(ResultsStore, "put", _failing_put)
    config = RunConfig(dataset="synthetic:100:200", epochs=2, n_negatives=5, device="cpu")
    with pytest.raises(StoreError) as info:
        run(config, results_dir=tmp_path / "store", checkpoint_dir=tmp_path / "ck", log=None)
    message = str(info.value)
    rescue = tmp_path / "store" / "rescued" / f"mmlrepro-rescued-{config.key(synthetic(100, 200).fingerprint)}.json"
    assert f"storing the finished run in {tmp_path / 'store'} failed" in message
    assert "No space left on device" in message and f"the finished run is kept in {rescue}" in message
    kept = RunResult.from_dict(json.loads(rescue.read_text()))
    assert kept.key == rescue.stem.removeprefix("mmlrepro-rescued-") and len(kept.history) == 2
    assert rescue.with_suffix(".npz").exists()   # the per-user values too


def test_the_rescue_falls_back_beside_the_store_and_the_cli_names_it(sandbox, capsys, monkeypatch):
    """The store folder is unwritable: the rescue goes to ~/.cache/mmlrepro/rescued/."""
    tmp_path = sandbox
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(ResultsStore, "put", _failing_put)
    atomic_write_json = runner_mod.atomic_write_json

    def refuse_store(data, path):
        if "store" in Path(path).parts:
            raise PermissionError(13, "Permission denied", str(path))
        return atomic_write_json(data, path)

    monkeypatch.setattr(runner_mod, "atomic_write_json", refuse_store)
    assert main(["train", *SYN, "--results-dir", str(tmp_path / "store")]) == 2
    err = one_error_line(capsys)
    rescued = list((tmp_path / "home" / ".cache" / "mmlrepro" / "rescued").glob("*.json"))
    assert len(rescued) == 1 and f"the finished run is kept in {rescued[0]}" in err
    assert "synthetic:100:200/mf/mml/N5" in err


def test_check_writable_creates_nothing(tmp_path):
    assert check_writable(tmp_path / "a" / "b", "somewhere") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# the Makefile and .ci/run set MMLREPRO_DATA_DIR only when ../shared/data exists


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("shared, env, expected", [
    (True, None, "{shared}"), (False, None, "UNSET"), (False, "", "UNSET"), (True, "", "{shared}"),
    (False, "/elsewhere", "/elsewhere"),
])
def test_makefile_sets_the_data_folder_only_when_it_exists(tmp_path, shared, env, expected):
    root = Path(__file__).resolve().parent.parent
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(root / "Makefile", checkout / "Makefile")
    if shared:
        (tmp_path / "shared" / "data").mkdir(parents=True)
    (checkout / "show.mk").write_text('show:\n\t@echo "[$${MMLREPRO_DATA_DIR-UNSET}]"\n')
    environ = {k: v for k, v in os.environ.items() if k != "MMLREPRO_DATA_DIR"}
    if env is not None:
        environ["MMLREPRO_DATA_DIR"] = env
    out = subprocess.run(["make", "-s", "-f", "Makefile", "-f", "show.mk", "show"], cwd=checkout, env=environ,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"[{expected.format(shared=tmp_path / 'shared' / 'data')}]"
