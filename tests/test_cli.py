"""The command line: help, the infer JSON contract, bad input on one line with the documented exit codes."""

import json

from .helpers import VAL_IMAGES, error_lines, run_cli, weights


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
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = error_lines(result)
        assert len(lines) == 1 and fragment in lines[0], (args, lines)
    bad_size = run_cli("infer", VAL_IMAGES, "--checkpoint", weights(416), "--input-size", "abc")
    assert bad_size.returncode == 2 and "not W or W,H" in bad_size.stderr
