"""Every official checkpoint layout loads (synthetic tensors with the official keys and shapes, and the real
release files); every broken one gives one clear line."""

import json
from pathlib import Path

import pytest
import torch

from nanodet_deploy.errors import CheckpointError
from nanodet_deploy.model import build_model, get_preset, load_weights

from .helpers import WEIGHTS, error_lines, run_cli, weights

FAMILIES = {"nanodet-plus-m": "nanodet-plus-m_416", "nanodet-plus-m-1.5x": "nanodet-plus-m-1.5x_416"}


def official_keys(family):
    return json.loads((WEIGHTS / f"official_keys_{family}.json").read_text())


def synthetic(shapes: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.tensor(seed) if k.endswith("num_batches_tracked") else torch.randn(s, generator=gen)
            for k, s in shapes.items()}


def layouts(family):
    """(name, object saved to disk, tensors the model must end up with)."""
    keys = official_keys(family)
    infer = synthetic(keys["inference_state_dict"], 1)
    full = synthetic(keys["full_model_state_dict"], 2)
    ema_ckpt = synthetic(keys["lightning_ckpt_state_dict_with_ema"], 3)
    plain_ckpt = synthetic(keys["lightning_ckpt_state_dict_without_ema"], 4)
    trainer_ema = synthetic(keys["trainer_pth_ema_state_dict"], 5)
    lightning_extras = {"epoch": 299, "global_step": 123456, "pytorch-lightning_version": "1.9.5"}

    def strip(d, prefix):
        return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}

    return [
        ("release .pth", {"state_dict": {f"model.{k}": v for k, v in infer.items()}}, infer),
        ("bare state dict, full model with aux", full, full),
        ("DataParallel module. prefix", {f"module.{k}": v for k, v in infer.items()}, infer),
        ("lightning .ckpt with EMA", {"state_dict": ema_ckpt, **lightning_extras}, strip(ema_ckpt, "avg_model.")),
        ("lightning .ckpt without EMA", {"state_dict": plain_ckpt, **lightning_extras},
         strip(plain_ckpt, "model.")),
        ("trainer EMA .pth", {"state_dict": trainer_ema}, trainer_ema),
    ]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_official_layout_loads(family, tmp_path):
    for name, saved, expected in layouts(family):
        path = tmp_path / "ckpt.pth"
        torch.save(saved, path)
        model = build_model(get_preset(FAMILIES[family]))
        load_weights(model, path, reg_max=7)
        for key, tensor in model.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(tensor, expected[key]), f"{name}: {key}"


def test_ema_weights_win_over_raw_weights(tmp_path):
    keys = official_keys("nanodet-plus-m")["lightning_ckpt_state_dict_with_ema"]
    state = {k: torch.zeros(s) if k.startswith("model.") else torch.ones(s) for k, s in keys.items()}
    torch.save({"state_dict": state}, tmp_path / "m.ckpt")
    model = build_model(get_preset("nanodet-plus-m_416"))
    load_weights(model, tmp_path / "m.ckpt", reg_max=7)
    assert torch.all(model.head.gfl_cls[0].weight == 1)


@pytest.mark.parametrize("size", [320, 416])
def test_real_release_weights_load(size):
    model = build_model(get_preset(f"nanodet-plus-m_{size}"))
    digest = load_weights(model, weights(size), reg_max=7)
    assert len(digest) == 64
    raw = torch.load(weights(size), weights_only=True)["state_dict"]
    assert torch.equal(model.head.gfl_cls[3].bias, raw["model.head.gfl_cls.3.bias"])


def release_state():
    return torch.load(weights(416), weights_only=True)


def load_into_m416(path):
    load_weights(build_model(get_preset("nanodet-plus-m_416")), path, reg_max=7)


def expect_one_line_error(path: Path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_into_m416(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_key(tmp_path):
    state = release_state()
    del state["state_dict"]["model.fpn.downsamples.1.pointwise.weight"]
    torch.save(state, tmp_path / "missing.pth")
    expect_one_line_error(tmp_path / "missing.pth", "1 missing", "fpn.downsamples.1.pointwise.weight")


def test_unexpected_and_misshaped_keys(tmp_path):
    state = release_state()
    state["state_dict"]["model.extra.weight"] = torch.zeros(3)
    state["state_dict"]["model.fpn.reduce_layers.0.conv.weight"] = torch.zeros(96, 117, 1, 1)
    torch.save(state, tmp_path / "odd.pth")
    expect_one_line_error(tmp_path / "odd.pth", "1 unexpected (extra.weight)",
                          "fpn.reduce_layers.0.conv.weight [96, 117, 1, 1] vs [96, 116, 1, 1]")


def test_wrong_class_count(tmp_path):
    state = release_state()
    for i in range(4):
        state["state_dict"][f"model.head.gfl_cls.{i}.weight"] = torch.zeros(20 + 32, 96, 1, 1)
        state["state_dict"][f"model.head.gfl_cls.{i}.bias"] = torch.zeros(20 + 32)
    torch.save(state, tmp_path / "classes20.pth")
    expect_one_line_error(tmp_path / "classes20.pth", "checkpoint has 20 classes, model has 80")


def test_wrong_preset(tmp_path):
    """A 1.0x checkpoint given to the 1.5x model: shapes named, not a stack trace."""
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_weights(build_model(get_preset("nanodet-plus-m-1.5x_416")), weights(416), reg_max=7)


def test_truncated_file(tmp_path):
    data = weights(416).read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    expect_one_line_error(tmp_path / "truncated.pth", "truncated")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "random.pth").write_bytes(bytes(range(256)) * 64)
    expect_one_line_error(tmp_path / "random.pth", "not a")
    torch.save({"state_dict": {"epoch": 3}}, tmp_path / "no_tensors.pth")
    expect_one_line_error(tmp_path / "no_tensors.pth", "not a checkpoint")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_into_m416(tmp_path / "absent.pth")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": release_state()["state_dict"], "payload": _RunsCode(marker)}, tmp_path / "evil.pth")
    assert not marker.exists()
    expect_one_line_error(tmp_path / "evil.pth", "refused", "--unsafe-load")
    assert not marker.exists()


def test_cli_reports_a_broken_checkpoint_on_one_line_with_exit_2(tmp_path):
    (tmp_path / "nanodet-plus-m_416.pth").write_bytes(b"not a checkpoint at all")
    result = run_cli("infer", WEIGHTS.parent / "coco/val-dev/images/000000000139.jpg",
                     "--checkpoint", tmp_path / "nanodet-plus-m_416.pth")
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nanodet-plus-m_416.pth" in lines[0]
    assert "Traceback" not in result.stderr
