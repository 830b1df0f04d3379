"""Where a base larger than one device goes: the job's `device_map` and `max_memory`, checked as the job loads.

They are handed to transformers' big-model loading (accelerate dispatch), whose own errors come late (after the
weights are read) and in several lines; so every value accelerate would refuse is one line here naming the field.
A device is a GPU index (`0`), `cuda:N` (read as the index N), `cpu`, `mps` or — in a device map and in
`max_memory` — `disk` (offloaded weights, read from a folder layer by layer)."""

from __future__ import annotations

import re
from typing import Any

from evaluator.config.validation import field_error

DEVICE_MAP_WORDS = ("auto", "balanced", "balanced_low_0", "sequential")
_NAMED_DEVICES = ("cpu", "disk", "mps")
_DEVICES_TEXT = "a GPU index (0, 1, …), cuda:N, cpu, mps or disk"
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)?\s*$")


def _device(v: Any) -> int | str | None:
    """A device as accelerate takes it (GPU index int, or cpu / mps / disk), or None when `v` names no device."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    if not isinstance(v, str):
        return None
    s = v.strip()
    if s.isdigit():
        return int(s)
    if s.startswith("cuda:") and s[5:].isdigit():
        return int(s[5:])
    return s if s in _NAMED_DEVICES else None


def check_device_map(v: Any) -> Any:
    """`device_map` as accelerate takes it: one of DEVICE_MAP_WORDS, or module name → device (cuda:N read as N)."""
    if v is None:
        return None
    if isinstance(v, str):
        if v.strip() in DEVICE_MAP_WORDS:
            return v.strip()
        raise field_error(f"{v!r} is not a device map — use {', '.join(DEVICE_MAP_WORDS)}, or a mapping of module "
                          f"names to devices ({_DEVICES_TEXT}), e.g. {{model.layers.0: 0, model.layers.1: 1}}")
    if not isinstance(v, dict):
        raise field_error(f"got {v!r} — use {', '.join(DEVICE_MAP_WORDS)}, or a mapping of module names to devices")
    if not v:
        raise field_error("the mapping is empty — map module names to devices, or use device_map: auto")
    out: dict[str, int | str] = {}
    for name, dev in v.items():
        if not isinstance(name, str):
            raise field_error(f"module name {name!r} is not text — keys are module names such as model.layers.0", str(name))
        d = _device(dev)
        if d is None:
            raise field_error(f"{dev!r} is not a device — use {_DEVICES_TEXT}", name)
        out[name] = d
    return out


def size_bytes(v: int | str) -> int:
    """A memory size in bytes: an int, or a number with a unit (KB/MB/GB/TB = powers of 1000, KiB/MiB/GiB/TiB of
    1024), e.g. "70GiB". Raises ValueError with the fix."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise ValueError(f"{v!r} is not a positive number of bytes")
        return v
    m = _SIZE.match(v) if isinstance(v, str) else None
    unit = (m.group(2) or "B").upper() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{v!r} is not a memory size — write bytes or a number with a unit, e.g. 70GiB, 500MB")
    return int(float(m.group(1)) * _UNITS[unit])


def check_max_memory(v: Any) -> Any:
    """`max_memory`: device → size, the sizes checked (kept as written), cuda:N and "N" read as the GPU index N."""
    if v is None:
        return None
    if not isinstance(v, dict) or not v:
        raise field_error(f"got {v!r} — write a mapping of devices to sizes, e.g. {{0: 70GiB, 1: 70GiB, cpu: 200GiB}}")
    out: dict[int | str, int | str] = {}
    for dev, size in v.items():
        d = _device(dev)
        if d is None:
            raise field_error(f"{dev!r} is not a device — use {_DEVICES_TEXT}", str(dev))
        try:
            size_bytes(size)
        except ValueError as exc:
            raise field_error(str(exc), str(dev)) from None
        out[d] = size
    return out


def placement_problem(device: str, device_map: Any, max_memory: Any) -> tuple[str, str] | None:
    """(field, why) when the job's device, device_map and max_memory do not go together, else None."""
    if max_memory is not None and device_map is None:
        return "max_memory", ("only applies with device_map (it caps what accelerate places on each device) — set "
                              "device_map: auto, or remove max_memory")
    if max_memory is not None and isinstance(device_map, dict):
        return "max_memory", ("an explicit device_map places every module itself, so max_memory would be ignored — "
                              "remove max_memory, or use device_map: auto with it")
    if device_map is not None and device != "auto":
        return "device", (f"{device!r} with device_map: the device map places the model (inputs go to the device "
                          "of its input embeddings) — leave device at auto")
    return None


def memory_for_loading(max_memory: dict | None) -> dict[int | str, int] | None:
    """`max_memory` as transformers takes it: sizes in bytes."""
    return None if max_memory is None else {d: size_bytes(s) for d, s in max_memory.items()}
