"""The environment record of a run (`env.json`): Python, platform, torch, transformers, peft and device facts."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def environment() -> dict[str, Any]:
    import torch

    pkgs = {}
    for name in ("tunecheck", "torch", "transformers", "peft", "datasets", "lm-eval", "accelerate", "tiktoken", "genai-prices"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    dev: dict[str, Any] = {"cuda": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        dev["gpu"] = torch.cuda.get_device_name(0)
        dev["gpu_count"] = torch.cuda.device_count()
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": pkgs, "device": dev}
