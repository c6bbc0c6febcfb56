"""The NanoDet-Plus reference model, its presets and checkpoint loading."""

from .checkpoint import extract_state_dict, load_weights, read_checkpoint
from .config import COCO_CLASSES, ModelSpec
from .load import LoadedModel, load, resolve_spec
from .nanodet_plus import NanoDetPlus, build_model
from .zoo import PRESETS, fetch_checkpoint, get_preset

__all__ = ["COCO_CLASSES", "ModelSpec", "NanoDetPlus", "PRESETS", "build_model", "extract_state_dict",
           "fetch_checkpoint", "get_preset", "load", "load_weights", "LoadedModel", "read_checkpoint",
           "resolve_spec"]
