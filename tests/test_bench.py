"""`nanodet-deploy bench`: real exports, real runtimes, the table / JSON / plot it writes, and its cache."""

import json
from pathlib import Path

import pytest

from nanodet_deploy import bench_cells
from nanodet_deploy.bench_cells import Cell, plan
from nanodet_deploy.model.macs import count_macs
from nanodet_deploy.targets import BACKENDS
from nanodet_deploy.errors import UsageError
from nanodet_deploy.model import load

from .helpers import VAL_ANN, VAL_IMAGES, run_cli, weights


def test_plan_keeps_meaningful_cells_only():
    cells = plan(list(BACKENDS), ["fp32", "fp16", "bf16"], [(416, 416)], [1, 2])
    assert Cell("torch", "fp32", (416, 416), 2) in cells and Cell("torch", "fp16", (416, 416), 2) not in cells
    # bf16 is an execution mode of FP32 artifacts, only where a row has it (OpenVINO)
    assert [c for c in cells if c.precision == "bf16"] == [
        Cell(name, "bf16", (416, 416), t) for name, row in BACKENDS.items() if "bf16" in row.execution_modes
        for t in (1, 2)]
    per_backend = [len({"fp32", "fp16", "bf16"} & {*row.precisions, *row.execution_modes}) for row in BACKENDS.values()]
    assert len(cells) == 2 * sum(per_backend) and any(c.backend == "openvino" and c.precision == "bf16" for c in cells)
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'"):
        plan(["tensorrt"], ["fp32"], [(416, 416)], [2])



def test_cached_exports_are_keyed_by_the_code_that_made_them(tmp_path, monkeypatch):
    """A bench work folder kept across an upgrade or a recipe change must not serve the old artifacts."""
    package = tmp_path / "package"
    (package / "converters").mkdir(parents=True)
    (package / "quantization.py").write_text("BINS = 2048\n")
    (package / "converters" / "onnx.py").write_text("OPSET = 11\n")
    digest = bench_cells.code_digest.__wrapped__  # uncached
    first = digest(package)
    (package / "converters" / "onnx.cpython-311.pyc").write_bytes(b"\0")  # compiled files are not the code
    assert digest(package) == first
    (package / "quantization.py").write_text("BINS = 4096\n")
    assert digest(package) != first
    cell = Cell(next(iter(BACKENDS)), "fp32", (416, 416), 2)
    keys = set()
    for code in ("old", "new"):
        monkeypatch.setattr(bench_cells, "code_digest", lambda code=code: code)
        keys.add(bench_cells.export_key("0" * 64, cell, None))
    assert len(keys) == 2

def test_macs_match_the_published_flops():
    """NanoDet-Plus-m publishes 0.9 / 1.52 GFLOPs at 320 / 416 (FLOPs = 2 x MACs); counted from our graph:
    0.762 G MACs at 416 = 1.524 GFLOPs."""
    module = load(weights(416)).module
    assert 2 * count_macs(module, (416, 416)) == pytest.approx(1.52e9, rel=0.02)
    assert 2 * count_macs(module, (320, 320)) == pytest.approx(0.90e9, rel=0.02)


def test_bench_writes_table_json_plot_and_converts_once(tmp_path):
    cache = tmp_path / "cache"
    args = ["bench", "--backend", "torch,onnxruntime", "--precision", "fp32,int8", "--runs", "5", "--warmup", "1",
            "--checkpoint", weights(320), "--images", VAL_IMAGES, "--ann", VAL_ANN, "--export-dir", cache,
            "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png", "--markdown", tmp_path / "b.md"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "no --calib: INT8 cells skipped" in first.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "fp32")}
    for row in rows.values():
        # real mAP of the 320 model on val-dev (0.3400 measured, = the official implementation)
        assert row["map"] == pytest.approx(0.3400, abs=1e-4)
        assert 0 < row["pre_ms"] and 0 < row["infer_ms"] and 0 < row["post_ms"] and row["peak_rss_mb"] > 50
        assert row["total_ms"] >= row["infer_ms"] and row["gflops_per_s"] > 0
    assert rows[("onnxruntime", "fp32")]["ratio"] == 1.0 and rows[("onnxruntime", "fp32")]["size_mb"] > 4
    # the gate's agreement with PyTorch and its interval, as the export's own parity.json has them (FP32 ONNX
    # Runtime at 320 on val-dev: 1.0 measured; the reference row has none)
    (ort,) = [r for r in report["results"] if r["backend"] == "onnxruntime"]
    gate = json.loads((Path(ort["export_dir"]) / "parity.json").read_text())["artifacts"][0]
    assert rows[("onnxruntime", "fp32")]["agreement"] == gate["agreement"] >= 0.99
    assert rows[("onnxruntime", "fp32")]["agreement_interval"] == gate["agreement_interval"]
    assert rows[("torch", "fp32")]["agreement"] is None and "agree IoU.9" in first.stdout
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every result names the machine: CPU, instruction sets, backend versions
    from nanodet_deploy.machine import machine, machine_line

    line = machine_line(machine())
    assert report["machine_line"] == line and "cores" in line and "onnxruntime " in line
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for flag, name in (("avx2", "AVX2"), ("avx512_vnni", "AVX512-VNNI"), ("avx512_bf16", "AVX512-BF16")):
        assert (f" {flag} " in cpuinfo.replace("\n", " ")) == (f" {name}" in line.split(" (no")[0]), name
    assert (tmp_path / "b.md").read_text().startswith(line + "\n\n| backend |")
    # the page beside the JSON: the machine line, the table, the stage split, the plot inline; no paths of the
    # cache folder the tool chose, no URLs (tests/test_report.py opens such pages in Chromium)
    page = (tmp_path / "b.html").read_text()
    assert line.split(" · ")[0] in page and "Where the time goes" in page and 'src="data:image/png;base64,' in page
    assert str(cache) not in page and "http" not in page
    assert " ".join(line.split()) in " ".join(first.stdout.split())
    assert "onnxruntime" in first.stdout and "torch" in first.stdout
    # the one accepted export is the fastest that passes its gate (the reference is no export: no verdict)
    from nanodet_deploy.bench_results import fastest_accepted

    (fastest,) = fastest_accepted(report["rows"])
    assert fastest.startswith("fastest that passes its gate, 320x320 2 threads: onnxruntime fp32, ")
    assert "1.00x onnxruntime fp32" in fastest and " ".join(fastest.split()) in " ".join(first.stdout.split())

    exported = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert any(p.name == "model.onnx" for p in exported)
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == exported  # nothing converted


def test_bench_throughput_mode_with_u8_input(tmp_path):
    """--mode throughput adds sequential and pipelined frames per second; --u8-input exports OpenVINO that way."""
    result = run_cli("bench", "--backend", "openvino", "--precision", "fp32", "--mode", "throughput", "--u8-input",
                     "--runs", "6", "--warmup", "1", "--no-memory", "--checkpoint", weights(320), "--images",
                     VAL_IMAGES, "--export-dir", tmp_path / "cache", "--json", tmp_path / "b.json")
    assert result.returncode == 0, result.stderr
    assert "fps pipelined" in result.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["mode"] == "throughput" and report["u8_input"] is True
    (row,) = report["results"]
    assert row["fps_sequential"] > 0 and row["fps_pipelined"] > 0
    assert json.loads((Path(row["export_dir"]) / "nanodet.json").read_text())["input_format"] == "bgr8-nhwc"
    from .test_report import chromium  # the bench page in a real browser: it loads, the scripts run

    dom = chromium("--dump-dom", (tmp_path / "b.html").as_uri())
    assert 'data-rendered="yes"' in dom.stdout and "data-js-errors" not in dom.stdout and "fps pipelined" in dom.stdout


def test_bench_usage_errors(tmp_path):
    result = run_cli("bench", "--backend", "tensorrt", "--checkpoint", weights(320))
    assert result.returncode == 2 and "unknown backend 'tensorrt'" in result.stderr
    result = run_cli("bench", "--precision", "int4", "--checkpoint", weights(320))
    assert result.returncode == 2 and "unknown precision 'int4'" in result.stderr
    result = run_cli("bench", "--mode", "fastest", "--checkpoint", weights(320))
    assert result.returncode == 2 and "--mode must be one of latency, throughput" in result.stderr


def test_int8_speed_table_warns_export_only_for_this_machine_and_version(tmp_path, monkeypatch):
    """bench records INT8 / FP32 inference per backend, size and threads (int8_speed.record); export warns from it
    only for the machine and backend version that measured it, and a damaged table is ignored."""
    from nanodet_deploy import int8_speed
    from nanodet_deploy.export import int8_slower
    from nanodet_deploy.machine import machine

    monkeypatch.setenv("NANODET_DEPLOY_CACHE", str(tmp_path))
    folder = tmp_path / "bench"
    folder.mkdir()
    info = machine()

    def row(backend, precision, infer_ms, vs_fp32=None, threads=2):
        return {"backend": backend, "precision": precision, "size": "416x416", "threads": threads,
                "infer_ms": infer_ms, "infer_vs_fp32": vs_fp32}

    rows = [row("ncnn", "fp32", 20.0), row("ncnn", "int8", 30.0, 1.5), row("openvino", "fp32", 14.0),
            row("openvino", "int8", 10.0, 10 / 14), row("ncnn", "fp32", 12.0, threads=4)]
    assert int8_speed.record(folder, rows[:1], info) is None  # no INT8 beside its FP32: nothing written
    path = int8_speed.record(folder, rows, info)
    assert path == int8_speed.default_table()
    warning = int8_slower("ncnn", (416, 416), 2)
    assert warning.startswith("INT8 ncnn ran at 1.50x its FP32 inference time on this machine (30.0 vs 20.0 ms")
    assert int8_slower("ncnn", (416, 416), None) == warning  # the entry with the most threads
    assert int8_slower("openvino", (416, 416), 2) is None  # faster
    assert int8_slower("ncnn", (320, 320), 2) is None  # not measured at that size
    other = {**info, "versions": {**info["versions"], "ncnn": "0.0.1"}}
    assert int8_speed.slower_warning("ncnn", (416, 416), 2, other) is None  # another ncnn version measured nothing
    assert int8_speed.slower_warning("ncnn", (416, 416), 2, {**info, "cpu": "another CPU"}) is None
    # a later run replaces the entry of the same machine, backend, size and threads
    int8_speed.record(folder, [row("ncnn", "fp32", 20.0), row("ncnn", "int8", 14.0, 0.7)], info)
    assert int8_slower("ncnn", (416, 416), 2) is None
    assert len(json.loads(path.read_text())["entries"]) == 2
    path.write_text('{"entries": [{"machine": 3}]}')
    assert int8_slower("ncnn", (416, 416), 2) is None


def test_int8_summary_says_why_a_backend_int8_is_not_faster():
    """One line per INT8 row measured beside its FP32; a slower one names the CPU's int8 dot product (or its
    absence) and the backend's cost as its per-layer profile measured it (INT8_COST in its converter)."""
    from nanodet_deploy.bench_results import int8_summary
    from nanodet_deploy.machine import int8_hardware_note

    rows = [{"backend": "mnn", "precision": "int8", "size": "416x416", "threads": 2, "infer_vs_fp32": 1.24},
            {"backend": "ncnn", "precision": "int8", "size": "416x416", "threads": 2, "infer_vs_fp32": 0.81},
            {"backend": "mnn", "precision": "fp32", "size": "416x416", "threads": 2, "infer_vs_fp32": None}]
    vnni = int8_hardware_note({"isa": ["AVX2", "AVX512-VNNI"]})
    slower, faster = int8_summary(rows, vnni)
    assert slower == (f"INT8 / FP32 inference, mnn 416x416 2 threads: 1.24x (NOT faster than FP32 on this machine: "
                      f"the CPU has VNNI; {BACKENDS['mnn'].int8_cost()})")
    assert "AVX2 only (no VNNI" in slower and faster.endswith("0.81x (faster)")
    (no_dot,) = int8_summary(rows[:1], int8_hardware_note({"isa": ["AVX2"]}))
    assert "this CPU has no int8 dot product" in no_dot
