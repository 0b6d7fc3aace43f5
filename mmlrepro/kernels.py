"""Compiled CPU kernels, built at first use with the machine's C++ toolchain (issue 37).

One module (``mmlrepro/csrc``: ``bindings.cpp`` and one file per kernel), two kernels:

- **the gathered cosine scores** of a batch (:func:`mmlrepro.models.gathered_cosine`, SPEC §3,
  ``gathered_cosine.cpp``). The PyTorch path gathers the ``[B, K, d]`` block of drawn rows,
  normalises, multiplies and scatters it, about ten passes over it (52 MB a step at N = 800 on
  Gowalla); the kernel groups the pairs by table row, reads each drawn row once forward and once
  backward however often it was drawn, and writes the table's dense gradient in one sequential
  pass. Both compute the same function to float rounding; they are not bit-identical (the
  kernel sums in its own fixed order, PyTorch in MKL's), so a run is verified with the path it
  was trained with (``provenance.negatives_scores``, :func:`trained_with_compiled_scores`), and
  trained again with it when it replaces a stored run (:func:`mmlrepro.runner.run`).
- **MML's margin penalty** Σ_k w_k·relu(s − m_k) and its gradient
  (:func:`mmlrepro.losses.margin_penalty`, SPEC §5, ``margin_penalty.cpp``): one pass each way
  where the PyTorch loop over the K margins makes about 4K, with the same operations in the same
  order element by element, so **bit-identical** to it (tests/test_kernels.py): no run changes
  with the path that computed its penalty.

:func:`compiled_kernels` compiles them once per machine with ``torch.utils.cpp_extension.load``
(``ninja`` and a C++ compiler; the build is cached under :func:`build_dir`, keyed by the
sources, the flags, torch's version and the CPU) and returns the loaded module, or None where it
cannot: no compiler, no ninja, a failed build, or ``MMLREPRO_KERNELS=0`` in the environment (no
notice then). Otherwise a None prints one line saying why and that the PyTorch paths are used,
once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

SOURCES = tuple(Path(__file__).parent / "csrc" / name
                for name in ("gathered_cosine.cpp", "margin_penalty.cpp", "bindings.cpp"))
# -ffp-contract=off: no fused multiply-adds, so the kernel's sums do not depend on whether
# the CPU has them, nor (fixed lanes, csrc) on its vector width
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]
ENV_SWITCH = "MMLREPRO_KERNELS"   # "0": never build or use the compiled kernels
COMPILED_SCORES = "compiled kernel"  # provenance.negatives_scores of a run scored by the kernel ...
PYTORCH_SCORES = "pytorch"           # ... and of one scored by the PyTorch path
MODULE = "mmlrepro_kernels"
STALE_LOCK_S = 600.0   # a build lock older than this was left by a killed build


def _cpu_id() -> str:
    """What the ``-march=native`` build depends on: the machine and its CPU flags."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()} {flags}"


def build_dir() -> Path:
    """``$XDG_CACHE_HOME/mmlrepro/kernels/<key>`` (default ``~/.cache/...``), the key a hash of the
    sources, the flags, torch's version and :func:`_cpu_id`."""
    key = hashlib.sha256("\n".join([*(source.read_text() for source in SOURCES), " ".join(FLAGS),
                                    torch.__version__, _cpu_id()]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mmlrepro" / "kernels" / key


def _ninja_on_path() -> bool:
    """Whether ``ninja`` runs (torch's build calls it by name). When it is not on PATH, the
    ``ninja`` package's binary and this Python's scripts folder (a venv not activated) are put
    in front of PATH for this process."""
    if shutil.which("ninja"):
        return True
    folders = [str(Path(sys.executable).parent)]
    try:
        import ninja

        folders.insert(0, getattr(ninja, "BIN_DIR", ""))
    except ImportError:
        pass
    os.environ["PATH"] = os.pathsep.join([*filter(None, folders), os.environ.get("PATH", "")])
    return shutil.which("ninja") is not None


def toolchain_missing() -> str | None:
    """What the build lacks on this machine (no ninja, no C++ compiler), or None."""
    if platform.system() == "Windows":
        return "not built on Windows"
    if not _ninja_on_path():
        return "ninja not found: pip install ninja"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler (c++ or $CXX)"
    return None


def _notice(reason: str) -> None:
    print(f"mmlrepro: compiled kernels not used ({reason}); the PyTorch paths compute the same "
          "scores and penalties, slower at many negatives", file=sys.stderr)


def load_kernels() -> ModuleType | None:
    """Build (the first time on this machine) and load the kernels; None, with one notice saying
    why, where that cannot be done. :func:`compiled_kernels` is this, once per process."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None   # asked for: no notice
    missing = toolchain_missing()
    if missing:
        _notice(missing)
        return None
    from torch.utils import cpp_extension

    where = build_dir()
    try:
        where.mkdir(parents=True, exist_ok=True)
        lock = where / "lock"   # left by a build that was killed: torch would wait for ever
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
        if not (where / f"{MODULE}.so").exists():
            print(f"mmlrepro: compiling the negatives kernels into {where} (once per machine, "
                  "about a minute)", file=sys.stderr)
        return cpp_extension.load(MODULE, [str(source) for source in SOURCES], extra_cflags=FLAGS,
                                  extra_ldflags=["-fopenmp"], build_directory=str(where),
                                  verbose=False)
    except Exception as err:   # a compiler or loader error: fall back, saying why
        _notice(f"build failed in {where}: {' '.join(str(err).split())[:200]}")
        return None


compiled_kernels = functools.cache(load_kernels)
compiled_kernels.__doc__ = ("The compiled kernels' module (``gathered_cosine_forward``/``_backward``, "
                            "``margin_penalty_forward``/``_backward``) or None, loaded once per "
                            "process (:func:`load_kernels`).")


def trained_with_compiled_scores(provenance: Mapping[str, Any]) -> bool:
    """Whether a stored run scored its negatives with the compiled kernel: its
    ``provenance["negatives_scores"]`` says so. A run stored before the kernel has no such entry
    and took the PyTorch path. The two paths agree to float rounding only, so a run is verified,
    and trained again, with the path it was stored with."""
    return provenance.get("negatives_scores") == COMPILED_SCORES
