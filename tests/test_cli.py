"""The command line: help, the infer JSON contract, bad input on one line with the documented exit codes."""

import json

from .helpers import ROOT, VAL_IMAGES, error_lines, run_cli, weights


def test_help_of_every_command():
    for args in ([], ["infer"], ["eval"], ["models"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, result.stderr


def test_models_lists_presets():
    result = run_cli("models")
    assert result.returncode == 0 and "nanodet-plus-m-1.5x_416" in result.stdout


def test_folder_with_good_and_bad_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.jpg").write_bytes((VAL_IMAGES / "000000000139.jpg").read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_bytes(b"this is not an image")
    result = run_cli("infer", folder, "--checkpoint", weights(416), "--json", tmp_path / "out.json",
                     "--save-vis", tmp_path / "vis")
    assert result.returncode == 1
    lines = error_lines(result)
    assert any("empty.jpg: empty file" in line for line in lines)
    assert any("text.png: not a decodable image" in line for line in lines)
    assert "Traceback" not in result.stderr
    entries = json.loads((tmp_path / "out.json").read_text())
    assert [e["image"].rsplit("/", 1)[-1] for e in entries] == ["good.jpg"]
    assert entries[0]["detections"] and (tmp_path / "vis" / "good.jpg").stat().st_size > 1000


def test_usage_errors_exit_2_on_one_line(tmp_path):
    for args, fragment in [
        (["infer", tmp_path / "absent.jpg", "--checkpoint", weights(416)], "absent.jpg: no such file"),
        (["infer", VAL_IMAGES / "000000000139.jpg", "--checkpoint", weights(416), "--model", "yolo"],
         "unknown model 'yolo'"),
        (["infer", VAL_IMAGES / "000000000139.jpg", "--checkpoint", tmp_path / "mine.pth"],
         "cannot tell the model"),
        (["infer", VAL_IMAGES / "000000000139.jpg", "--checkpoint", weights(416), "--backend", "tensorrt"],
         "unknown backend 'tensorrt'"),
        (["eval", "--images", VAL_IMAGES, "--ann", tmp_path / "none.json", "--checkpoint", weights(416)],
         "none.json: cannot read"),
        # checked before converting: the export's out folder is never made (asserted below)
        (["export", "--to", "onnxruntime", "--checkpoint", weights(416), "--out", tmp_path / "out",
          "--verify-images", VAL_IMAGES, "--verify-ann", tmp_path / "none.json"], "none.json: cannot read"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = error_lines(result)
        assert len(lines) == 1 and fragment in lines[0], (args, lines)
    assert not (tmp_path / "out").exists()
    bad_size = run_cli("infer", VAL_IMAGES, "--checkpoint", weights(416), "--input-size", "abc")
    assert bad_size.returncode == 2 and "not W or W,H" in bad_size.stderr


def test_commands_that_need_no_model_start_without_pytorch(tmp_path):
    """`models`, `--help`, an export's usage error and `infer --export` never import torch (it is 1.4 s of a
    2.0 s start; an app's deploy box may not have it): run with every `import torch` failing."""
    import subprocess
    import sys

    export = tmp_path / "onnx"
    made = run_cli("export", "--to", "onnxruntime", "--checkpoint", weights(320), "--out", export)
    assert made.returncode == 0, made.stderr
    blocker = ("import sys; sys.modules['torch'] = None; from nanodet_deploy.cli import main; "
               "sys.argv = ['nanodet-deploy', *sys.argv[1:]]; main()")
    for args, code in [(["models"], 0), (["export", "--help"], 0),
                       (["export", "--to", "openvino", "--checkpoint", weights(320), "--weight-int8", "--out",
                         tmp_path / "x"], 2),
                       (["infer", VAL_IMAGES / "000000000139.jpg", "--export", export, "--json", tmp_path / "d.json"],
                        0)]:
        result = subprocess.run([sys.executable, "-c", blocker, *map(str, args)], capture_output=True, text=True,
                                cwd=ROOT)
        assert result.returncode == code and "torch" not in result.stderr, (args, result.stderr[-2000:])
    assert json.loads((tmp_path / "d.json").read_text())[0]["detections"]
