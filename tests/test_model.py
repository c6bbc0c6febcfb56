"""The reference model has exactly the official parameter names and shapes, and the deploy output layout."""

import json

import pytest
import torch

from nanodet_deploy.model import PRESETS, build_model, get_preset

from .helpers import WEIGHTS


@pytest.mark.parametrize("family", ["nanodet-plus-m", "nanodet-plus-m-1.5x"])
def test_state_dict_equals_official_inference_keys(family):
    official = json.loads((WEIGHTS / f"official_keys_{family}.json").read_text())
    for size in (320, 416):
        model = build_model(get_preset(f"{family}_{size}"))
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == official["inference_state_dict"]  # same keys, same order, same shapes
        assert sum(p.numel() for p in model.parameters()) == official["counts"]["inference_params"]


@pytest.mark.parametrize("size", [(416, 416), (320, 320), (416, 320), (320, 192)])
def test_deploy_output_is_one_tensor_points_stride8_to_64(size):
    w, h = size
    spec = get_preset("nanodet-plus-m_416").with_input_size(w, h)
    model = build_model(spec)
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    points = sum(-(-w // s) * -(-h // s) for s in (8, 16, 32, 64))
    assert out.shape == (1, points, 80 + 32)
    scores = out[..., :80]
    assert scores.min() >= 0 and scores.max() <= 1  # sigmoid is inside the deploy graph


def test_presets():
    assert set(PRESETS) == {"nanodet-plus-m_320", "nanodet-plus-m_416", "nanodet-plus-m-1.5x_320",
                            "nanodet-plus-m-1.5x_416"}
    assert get_preset("nanodet-plus-m-1.5x_320").input_size == (320, 320)
