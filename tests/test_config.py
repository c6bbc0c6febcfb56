"""Models from official NanoDet training YAMLs — what users who trained their own model hold."""

import numpy as np
import pytest
import torch
import yaml

from nanodet_deploy import Detector
from nanodet_deploy.errors import ConfigError
from nanodet_deploy.model import COCO_CLASSES, ModelSpec, build_model, get_preset

from .helpers import VAL_IMAGES, error_lines, run_cli


def official_config(num_classes=80, class_names=COCO_CLASSES, input_size=(416, 416)):
    """The layout of NanoDet's config/nanodet-plus-m_416.yml, training sections included."""
    return {
        "save_dir": "workspace/nanodet-plus-m_416",
        "model": {
            "weight_averager": {"name": "ExpMovingAverager", "decay": 0.9998},
            "arch": {
                "name": "NanoDetPlus", "detach_epoch": 10,
                "backbone": {"name": "ShuffleNetV2", "model_size": "1.0x", "out_stages": [2, 3, 4],
                             "activation": "LeakyReLU"},
                "fpn": {"name": "GhostPAN", "in_channels": [116, 232, 464], "out_channels": 96, "kernel_size": 5,
                        "num_extra_level": 1, "use_depthwise": True, "activation": "LeakyReLU"},
                "head": {"name": "NanoDetPlusHead", "num_classes": num_classes, "input_channel": 96,
                         "feat_channels": 96, "stacked_convs": 2, "kernel_size": 5, "strides": [8, 16, 32, 64],
                         "activation": "LeakyReLU", "reg_max": 7, "norm_cfg": {"type": "BN"},
                         "loss": {"loss_qfl": {"name": "QualityFocalLoss", "use_sigmoid": True, "beta": 2.0,
                                               "loss_weight": 1.0},
                                  "loss_dfl": {"name": "DistributionFocalLoss", "loss_weight": 0.25},
                                  "loss_bbox": {"name": "GIoULoss", "loss_weight": 2.0}}},
                "aux_head": {"name": "SimpleConvHead", "num_classes": num_classes, "input_channel": 192,
                             "feat_channels": 192, "stacked_convs": 4, "strides": [8, 16, 32, 64],
                             "activation": "LeakyReLU", "reg_max": 7},
            },
        },
        "data": {
            "train": {"name": "CocoDataset", "input_size": list(input_size), "keep_ratio": False},
            "val": {"name": "CocoDataset", "input_size": list(input_size), "keep_ratio": False,
                    "pipeline": {"normalize": [[103.53, 116.28, 123.675], [57.375, 57.12, 58.395]]}},
        },
        "device": {"gpu_ids": [0], "workers_per_gpu": 10, "batchsize_per_gpu": 96},
        "schedule": {"optimizer": {"name": "AdamW", "lr": 0.001}, "total_epochs": 300},
        "class_names": list(class_names),
    }


def write(tmp_path, cfg, name="model.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_official_config_builds_the_preset(tmp_path):
    spec = ModelSpec.from_yaml(write(tmp_path, official_config()))
    preset = get_preset("nanodet-plus-m_416")
    assert spec.name == "nanodet-plus-m_416"
    assert (spec.input_size, spec.class_names, spec.mean, spec.std) == \
        (preset.input_size, preset.class_names, preset.mean, preset.std)
    ours = {k: v.shape for k, v in build_model(spec).state_dict().items()}
    assert ours == {k: v.shape for k, v in build_model(preset).state_dict().items()}


def test_custom_three_class_non_square_model_end_to_end(tmp_path):
    """A self-trained 3-class 320x192 model: config + its checkpoint -> detections, via API and CLI."""
    cfg_path = write(tmp_path, official_config(3, ["cat", "dog", "bird"], (320, 192)))
    spec = ModelSpec.from_yaml(cfg_path)
    torch.manual_seed(0)
    model = build_model(spec)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "mine.pth")
    detector = Detector(config=cfg_path, checkpoint=tmp_path / "mine.pth")
    tensor = np.zeros((1, 3, 192, 320), np.float32)
    points = sum(-(-320 // s) * -(-192 // s) for s in (8, 16, 32, 64))
    assert detector.raw(tensor).shape == (1, points, 3 + 32)
    image = np.full((240, 400, 3), 127, np.uint8)
    dets = detector(image)
    assert all(0 <= b[0] <= b[2] <= 400 and 0 <= b[1] <= b[3] <= 240 for b in dets.boxes)
    result = run_cli("infer", VAL_IMAGES / "000000000139.jpg", "--config", cfg_path,
                     "--checkpoint", tmp_path / "mine.pth", "--json", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"]["arch"].update(name="NanoDet"), "only NanoDetPlus"),
    (lambda c: c["model"]["arch"]["backbone"].update(name="EfficientNetLite"), "only ShuffleNetV2"),
    (lambda c: c["model"]["arch"]["backbone"].update(model_size="3.0x"), "model_size"),
    (lambda c: c["model"]["arch"]["head"].update(norm_cfg={"type": "GN"}), "norm_cfg"),
    (lambda c: c.update(class_names=["a", "b"]), "2 class names for 80 classes"),
    (lambda c: c["data"]["val"].update(input_size=[400, 400]), "multiples of 32"),
])
def test_configs_we_cannot_build_fail_clearly(tmp_path, change, message):
    cfg = official_config()
    change(cfg)
    path = write(tmp_path, cfg)
    with pytest.raises(ConfigError, match=message) as info:
        ModelSpec.from_yaml(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_config_via_cli(tmp_path):
    (tmp_path / "bad.yml").write_text("model: [unclosed")
    result = run_cli("infer", VAL_IMAGES / "000000000139.jpg", "--config", tmp_path / "bad.yml",
                     "--checkpoint", tmp_path / "x.pth")
    assert result.returncode == 2
    assert error_lines(result) == [error_lines(result)[0]] and "bad.yml: not valid YAML" in result.stderr
