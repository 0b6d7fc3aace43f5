"""Which device a run uses, checked before any data is loaded (SPEC §3; issue 15).

``"auto"`` is CUDA when present, else the CPU. Only devices that work are accepted: ``cpu`` and
``cuda[:i]`` of a visible GPU. ``mps`` is refused: evaluation ranks in float64 and the trainer
relies on sparse row gradients, neither of which MPS supports. torch is imported only by the
functions that ask it, so that naming and parsing devices (configs, stored runs) does not.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device that does not exist here or that the package does not support."""


def check_device_name(device: object) -> str:
    """``device`` if it is a well-formed device name the package supports, else ValueError."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        hint = " (MPS lacks float64 and sparse gradients)" if isinstance(device, str) and device.startswith("mps") else ""
        raise DeviceError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}{hint}")
    return device


def resolve_device(device: str) -> torch.device:
    """The ``torch.device`` of ``device``; :class:`DeviceError` when it is not available here."""
    import torch

    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False); use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} asked for, but only {torch.cuda.device_count()} "
                              "CUDA GPU(s) are visible")
    return resolved


def device_memory(device: torch.device) -> int:
    """Bytes of memory of ``device``: the GPU's total memory, or the machine's physical RAM for
    the CPU; 0 when it cannot be told (the caller then checks nothing against it)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with the number of threads torch uses."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def run_device(history: list[dict[str, Any]], fallback: str = "") -> str:
    """The device of a run from the ``device`` of each epoch of its ``history``.

    One device: its name. A run resumed elsewhere (another GPU, another thread count): each
    stretch, ``"A (epochs 1–2); B (epochs 3–100)"``, so its seconds per epoch are never read as
    one device's. Epochs without a ``device`` (records trained before it was kept) take
    ``fallback``.
    """
    stretches: list[list[Any]] = []   # [device, first epoch, last epoch]
    for record in history:
        name = record.get("device", fallback)
        if stretches and stretches[-1][0] == name:
            stretches[-1][2] = record["epoch"]
        else:
            stretches.append([name, record["epoch"], record["epoch"]])
    if len(stretches) <= 1:
        return stretches[0][0] if stretches else fallback
    return "; ".join(f"{name} (epoch{'s' if a != b else ''} {a}{f'–{b}' if a != b else ''})"
                     for name, a, b in stretches)


_CPU_STRETCH = re.compile(r"(.+) \((\d+) threads\)$")   # a CPU's device_name: "<model> (<k> threads)"


def stretches(device: str) -> list[str]:
    """The device names of a run's stretches (:func:`run_device`), without their epoch ranges:
    ``"A (epochs 1–2); B (epochs 3–100)"`` -> ``["A", "B"]``."""
    return [re.sub(r" \(epochs [^)]*\)$", "", d).strip() for d in str(device).split("; ") if d.strip()]


def cpu_model(device: str) -> str:
    """A device name without its thread count: ``"AMD EPYC (2 threads)"`` -> ``"AMD EPYC"`` (a GPU's
    name unchanged)."""
    found = _CPU_STRETCH.match(device)
    return found.group(1) if found else device


def cpu_threads(device: str) -> int | None:
    """The thread count of a CPU device name, None for any other device."""
    found = _CPU_STRETCH.match(device)
    return int(found.group(2)) if found else None
