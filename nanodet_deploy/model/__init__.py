"""The NanoDet-Plus reference model, its presets and checkpoint loading.

Each name below loads its module on first use (PEP 562): the presets, the zoo and the model's configuration need no
PyTorch, so `nanodet-deploy models`, `--help`, usage errors and `infer --export` start without importing it
(measured: a usage error took 2.0 s with torch imported at start, 0.37 s without). tests/test_architecture.py reads
``_LAZY`` as this package's imports."""

from importlib import import_module

_LAZY = {
    "checkpoint": ("extract_state_dict", "load_weights", "read_checkpoint"),
    "config": ("COCO_CLASSES", "ModelSpec"),
    "load": ("LoadedModel", "load", "resolve_spec"),
    "nanodet_plus": ("NanoDetPlus", "build_model"),
    "zoo": ("PRESETS", "fetch_checkpoint", "get_preset"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = sorted(_SOURCE)


def __getattr__(name: str):
    if name not in _SOURCE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
