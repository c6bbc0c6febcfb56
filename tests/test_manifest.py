"""nanodet.json: written by one function, read by every runtime; broken ones are refused clearly."""

import json

import pytest

from nanodet_deploy.manifest import MANIFEST_NAME, Manifest, ManifestError, read_manifest, write_manifest


def sample(**changes) -> Manifest:
    fields = dict(model="nanodet-plus-m_416", class_names=["a", "b", "c"], input_width=416, input_height=320,
                  mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], keep_ratio=False,
                  strides=[8, 16, 32, 64], reg_max=7, backend="onnxruntime", precision="fp32",
                  files={"model": "model.onnx"}, checkpoint_sha256="0" * 64, versions={"onnx": "1.0"},
                  conversion={"opset": 11})
    fields.update(changes)
    return Manifest(**fields)


def test_round_trip(tmp_path):
    manifest = sample()
    (tmp_path / "model.onnx").write_bytes(b"x")
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path)
    assert again == manifest
    cfg = again.processing_config()
    assert cfg.input_size == (416, 320) and cfg.num_classes == 3 and cfg.strides == (8, 16, 32, 64)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("class_names"), "missing class_names"),
    (lambda d: d.update(schema_version=99), "schema 99"),
    (lambda d: d.update(input_width=-1), "invalid manifest"),
    (lambda d: d.update(files={"model": "absent.onnx"}), "model file absent.onnx is missing"),
])
def test_broken_manifests_are_refused(tmp_path, mutate, message):
    (tmp_path / "model.onnx").write_bytes(b"x")
    data = json.loads(sample().to_json())
    mutate(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(ManifestError, match="no nanodet.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="no such export folder"):
        read_manifest(tmp_path / "absent")
