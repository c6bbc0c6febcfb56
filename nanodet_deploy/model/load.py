"""``load()``: checkpoint (file or zoo name) + model name or YAML -> the PyTorch reference, ready to run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .checkpoint import load_weights
from .config import ModelSpec
from .nanodet_plus import NanoDetPlus, build_model
from .zoo import PRESETS, ZOO, fetch_checkpoint, get_preset


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: NanoDetPlus
    checkpoint: Path
    sha256: str


def resolve_spec(checkpoint: str | Path | None = None, model: str | None = None,
                 config: str | Path | None = None, input_size: tuple[int, int] | None = None,
                 keep_ratio: bool | None = None) -> ModelSpec:
    """The architecture: ``config`` YAML, else preset ``model``, else the preset a zoo name or a file named
    like a preset (``nanodet-plus-m_416.pth``) implies."""
    if model and config:
        raise UsageError("pass --model or --config, not both")
    if config:
        spec = ModelSpec.from_yaml(config)
    elif model:
        spec = get_preset(model)
    else:
        name = str(checkpoint) if checkpoint is not None and str(checkpoint) in ZOO else \
            Path(str(checkpoint)).stem if checkpoint is not None else None
        if name not in PRESETS:
            raise UsageError(f"cannot tell the model of checkpoint '{checkpoint}': pass --model "
                             f"({', '.join(PRESETS)}) or --config my.yml")
        spec = get_preset(name)
    if input_size:
        spec = spec.with_input_size(*input_size)
    if keep_ratio is not None:
        from dataclasses import replace
        spec = replace(spec, keep_ratio=keep_ratio)
    return spec


def load(checkpoint: str | Path, model: str | None = None, config: str | Path | None = None,
         input_size: tuple[int, int] | None = None, keep_ratio: bool | None = None,
         unsafe: bool = False, spec: ModelSpec | None = None) -> LoadedModel:
    """Build the model and load ``checkpoint`` (a file, or a zoo name downloaded once into the cache).
    ``spec`` gives the architecture directly instead of ``model`` / ``config``."""
    if checkpoint is None:
        raise UsageError("a checkpoint is needed: pass --checkpoint FILE or a zoo name "
                         f"({', '.join(ZOO)})")
    spec = spec or resolve_spec(checkpoint, model, config, input_size, keep_ratio)
    path = fetch_checkpoint(str(checkpoint)) if str(checkpoint) in ZOO and not Path(str(checkpoint)).exists() \
        else Path(checkpoint)
    module = build_model(spec)
    sha256 = load_weights(module, path, spec.reg_max, unsafe=unsafe)
    return LoadedModel(spec, module, path, sha256)
