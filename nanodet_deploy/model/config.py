"""ModelSpec: everything needed to build a NanoDet-Plus model and to pre/post-process for it.

Built from a preset (``zoo.py``) or from an official NanoDet training YAML — what users who trained their own
model hold. Only inference-relevant parts of the YAML are read; training-only modules are ignored.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..processing import IOU_THR, MAX_DETS, MAX_INPUT_SIDE, SCORE_THR, ProcessingConfig

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell_phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy_bear",
    "hair_drier", "toothbrush",
)

# NanoDet's val pipeline normalisation, BGR order.
NANODET_MEAN_BGR = (103.53, 116.28, 123.675)
NANODET_STD_BGR = (57.375, 57.12, 58.395)

# YAML keys that belong to training (losses, assigners, weight init) and are ignored for inference.
_TRAINING_ONLY_KEYS = {"name", "loss", "assigner_cfg", "pretrain", "init_cfg"}


@dataclass(frozen=True)
class ModelSpec:
    """A NanoDet-Plus architecture plus its input contract.

    ``backbone``, ``fpn`` and ``head`` are the keyword arguments of ShuffleNetV2, GhostPAN and NanoDetPlusHead.
    """

    name: str
    backbone: dict
    fpn: dict
    head: dict
    input_size: tuple[int, int] = (416, 416)  # (width, height)
    keep_ratio: bool = False
    mean: tuple[float, float, float] = NANODET_MEAN_BGR
    std: tuple[float, float, float] = NANODET_STD_BGR
    class_names: tuple[str, ...] = field(default=COCO_CLASSES)

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"model '{self.name}': {len(self.class_names)} class names for "
                              f"{self.num_classes} classes")
        w, h = self.input_size
        if not (0 < w <= MAX_INPUT_SIDE and 0 < h <= MAX_INPUT_SIDE) or w % 32 or h % 32:
            raise ConfigError(f"model '{self.name}': input size {w}x{h} must be multiples of 32 up to "
                              f"{MAX_INPUT_SIDE}")

    @property
    def num_classes(self) -> int:
        return self.head["num_classes"]

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.head.get("strides", (8, 16, 32, 64)))

    @property
    def reg_max(self) -> int:
        return self.head.get("reg_max", 7)

    def processing_config(self, score_thr: float = SCORE_THR, iou_thr: float = IOU_THR,
                          max_dets: int = MAX_DETS) -> ProcessingConfig:
        """What pre/post-processing needs of this model: the one spec -> processing mapping."""
        return ProcessingConfig(input_size=tuple(self.input_size), num_classes=self.num_classes,
                                strides=self.strides, reg_max=self.reg_max, mean=tuple(self.mean),
                                std=tuple(self.std), keep_ratio=self.keep_ratio, score_thr=score_thr,
                                iou_thr=iou_thr, max_dets=max_dets)

    def architecture(self) -> dict:
        """The constructor arguments, JSON-ready (recorded in export manifests to rebuild the reference)."""
        return json.loads(json.dumps({"backbone": self.backbone, "fpn": self.fpn, "head": self.head}))

    def with_input_size(self, width: int, height: int) -> "ModelSpec":
        return replace(self, input_size=(int(width), int(height)))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelSpec":
        """Read an official NanoDet training config (``model.arch``, ``data.val``, ``class_names``)."""
        import yaml

        path = Path(path)
        try:
            cfg = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        try:
            return _spec_from_config(cfg, default_name=path.stem)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def _section(cfg: dict, *keys: str) -> dict:
    node = cfg
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"missing '{'.'.join(keys)}'")
        node = node[key]
    if not isinstance(node, dict):
        raise ConfigError(f"'{'.'.join(keys)}' is not a mapping")
    return copy.deepcopy(node)


def _expect(section: str, cfg: dict, key: str, allowed) -> None:
    if key in cfg and cfg.pop(key) not in allowed:
        raise ConfigError(f"{section}.{key} must be one of {list(allowed)} for this toolkit")


def _spec_from_config(cfg, default_name: str) -> ModelSpec:
    if not isinstance(cfg, dict):
        raise ConfigError("not a NanoDet config (top level is not a mapping)")
    arch = _section(cfg, "model", "arch")
    if arch.get("name") != "NanoDetPlus":
        raise ConfigError(f"model.arch.name is '{arch.get('name')}'; only NanoDetPlus is supported")
    backbone = _section(arch, "backbone")
    if backbone.get("name") != "ShuffleNetV2":
        raise ConfigError(f"backbone '{backbone.get('name')}' is not supported (only ShuffleNetV2)")
    _expect("backbone", backbone, "with_last_conv", (False,))
    _expect("backbone", backbone, "kernal_size", (3,))
    fpn = _section(arch, "fpn")
    if fpn.get("name") != "GhostPAN":
        raise ConfigError(f"fpn '{fpn.get('name')}' is not supported (only GhostPAN)")
    _expect("fpn", fpn, "norm_cfg", ({"type": "BN"},))
    upsample = fpn.pop("upsample_cfg", None) or {}
    if upsample.get("scale_factor", 2) != 2:
        raise ConfigError("fpn.upsample_cfg.scale_factor must be 2")
    if "mode" in upsample:
        fpn["upsample_mode"] = upsample["mode"]
    head = _section(arch, "head")
    if head.get("name") != "NanoDetPlusHead":
        raise ConfigError(f"head '{head.get('name')}' is not supported (only NanoDetPlusHead)")
    _expect("head", head, "norm_cfg", ({"type": "BN"},))
    for section in (backbone, fpn, head):
        for key in _TRAINING_ONLY_KEYS:
            section.pop(key, None)

    val = cfg.get("data", {}).get("val", {}) if isinstance(cfg.get("data"), dict) else {}
    input_size = tuple(val.get("input_size", (416, 416)))
    normalize = (val.get("pipeline") or {}).get("normalize")
    mean, std = (tuple(normalize[0]), tuple(normalize[1])) if normalize else (NANODET_MEAN_BGR, NANODET_STD_BGR)
    class_names = cfg.get("class_names")
    if class_names is None:
        if head.get("num_classes") != len(COCO_CLASSES):
            raise ConfigError("config has no class_names")
        class_names = COCO_CLASSES
    spec = ModelSpec(
        name=str(cfg.get("save_dir", "")).rstrip("/").split("/")[-1] or default_name,
        backbone=backbone, fpn=fpn, head=head,
        input_size=(int(input_size[0]), int(input_size[1])),
        keep_ratio=bool(val.get("keep_ratio", False)),
        mean=mean, std=std, class_names=tuple(str(c) for c in class_names),
    )
    try:  # validate every constructor argument now, with a config-level error, rather than at build time
        from .nanodet_plus import build_model
        build_model(spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot build the model from this config: {e}") from None
    return spec
