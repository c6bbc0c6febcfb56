"""The NanoDet-Plus reference model, its presets and checkpoint loading.

The names below load their module on first use (PEP 562): the presets, the zoo and the model's configuration
need no PyTorch, so `nanodet-deploy models`, `--help`, usage errors and `infer --export` start without importing
it (measured: a usage error took 2.0 s with torch imported at start, most of it torch's import)."""

from importlib import import_module

_SOURCES = {
    "extract_state_dict": "checkpoint", "load_weights": "checkpoint", "read_checkpoint": "checkpoint",
    "COCO_CLASSES": "config", "ModelSpec": "config",
    "LoadedModel": "load", "load": "load", "resolve_spec": "load",
    "NanoDetPlus": "nanodet_plus", "build_model": "nanodet_plus",
    "PRESETS": "zoo", "fetch_checkpoint": "zoo", "get_preset": "zoo",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
