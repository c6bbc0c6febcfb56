"""Load NanoDet checkpoints in every layout users hold into our model, or fail with one clear line.

Layouts: the official inference ``.pth`` ({"state_dict": {"model.<key>"}}), pytorch-lightning ``.ckpt``
({"state_dict": {"model.<key>", "avg_model.<key>"}} — the EMA copy is preferred, as NanoDet's loader does),
the trainer's EMA ``.pth`` (keys without prefix), bare state dicts, and ``module.`` (DataParallel) prefixes.
Training-only ``aux_fpn.*`` / ``aux_head.*`` keys are dropped; every other key must match exactly.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line

TRAINING_ONLY_PREFIXES = ("aux_fpn.", "aux_head.")
# BatchNorm's step counter is not a weight: tolerate state dicts saved without it.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)
_LIST_AT_MOST = 5


def read_checkpoint(path: str | Path, unsafe: bool = False) -> dict:
    """The raw object of a checkpoint file. ``weights_only=True`` unless ``unsafe`` (runs pickled code!)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except pickle.UnpicklingError as e:
        # torch's two wordings: "GLOBAL x was not an allowed global", and for blocked modules (os, posix,
        # subprocess, builtins...) "unsupported GLOBAL x whose module y is blocked"
        found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module)", str(e))
        if found:  # a pickled Python object (class, function) that weights_only refuses to import
            raise CheckpointError(
                f"{path}: refused to load: the file holds the Python object '{found.group(1)}', and unpickling "
                f"it can run code; if you trust the file, pass --unsafe-load") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from None
    except (ImportError, AttributeError) as e:  # --unsafe-load: a pickled class whose code is not importable
        raise CheckpointError(f"{path}: cannot unpickle it: {first_line(e)} (the Python code the file "
                              f"refers to is not installed)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        reason = "file is truncated" if isinstance(e, EOFError) or "central directory" in str(e) \
            else first_line(e)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def extract_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Normalise any supported layout to our model's key names (``backbone.``/``fpn.``/``head.``)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{source}: not a checkpoint (expected a state dict of named tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: not a checkpoint (it holds no tensors)")
    ema = {k[len("avg_model."):]: v for k, v in tensors.items() if k.startswith("avg_model.")}
    if ema:  # pytorch-lightning .ckpt with EMA weights: those are what NanoDet evaluates and releases
        tensors = ema
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return {k: v for k, v in tensors.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}


def _classes_in(state: dict, reg_max: int) -> int | None:
    weight = state.get("head.gfl_cls.0.weight")
    return None if weight is None else weight.shape[0] - 4 * (reg_max + 1)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f", … {len(keys) - _LIST_AT_MOST} more" if len(keys) > _LIST_AT_MOST else "")


def match_state_dict(state: dict, model: torch.nn.Module, reg_max: int, source: str) -> dict:
    """``state`` checked against ``model``'s keys and shapes; missing optional buffers filled from the model."""
    expected = model.state_dict()
    ours, theirs = _classes_in(expected, reg_max), _classes_in(state, reg_max)
    if ours is not None and theirs is not None and ours != theirs:
        raise CheckpointError(f"{source}: checkpoint has {theirs} classes, model has {ours} "
                              f"(pass the --config the checkpoint was trained with)")
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshaped:
        problems = [f"{len(missing)} missing ({_listed(missing)})" if missing else "",
                    f"{len(unexpected)} unexpected ({_listed(unexpected)})" if unexpected else "",
                    f"{len(misshaped)} mis-shaped, checkpoint vs model ({_listed(misshaped)})" if misshaped else ""]
        raise CheckpointError(f"{source}: checkpoint does not fit the model: "
                              + "; ".join(p for p in problems if p))
    return {k: state.get(k, v) for k, v in expected.items()}


def load_weights(model: torch.nn.Module, path: str | Path, reg_max: int, unsafe: bool = False) -> str:
    """Load checkpoint ``path`` into ``model`` in place; returns the file's sha256."""
    from .zoo import sha256_file

    state = extract_state_dict(read_checkpoint(path, unsafe=unsafe), source=str(path))
    state = match_state_dict(state, model, reg_max, source=str(path))
    check_finite(state, source=str(path))
    model.load_state_dict({k: v.to(expected.dtype) for (k, v), expected in
                           zip(state.items(), model.state_dict().values())})
    return sha256_file(path)


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """A NaN or Inf weight makes every score NaN: no detections, silently. Refuse it by name."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} weight tensor(s) hold NaN or Inf values ({_listed(bad)})")
