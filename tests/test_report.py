"""report.html: rendered from the JSON the tools write, opened in a real headless Chromium (Debian's
`chromium`; .ci/run installs it), self-contained (no URLs, no machine paths beyond the ones the user gave)."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from .helpers import CALIB_IMAGES, VAL_IMAGES, error_lines, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium(*args, timeout=120) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("headless Chromium is needed (apt-get install chromium; .ci/run installs it)")
    # no network at all: any URL the page tried to load would fail (and the URL scan below finds none)
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
                           "--host-resolver-rules=MAP * ~NOTFOUND", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def machine_paths(html: str) -> list[str]:
    """Absolute file paths in the page, data: URIs left out."""
    text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", html)
    return re.findall(r"(?:(?<=[\s\"'>(=])|^)(/[\w.-]+(?:/[\w.-]+)+)", text)


def assert_self_contained(html: str, allowed: list[str]):
    assert not re.search(r"(?:https?|ftp)://|//[\w-]+\.[\w.-]+/|<link\b|\bsrc=\"(?!data:)", html), "external reference"
    foreign = [p for p in machine_paths(html) if not any(p.startswith(a) for a in allowed)]
    assert not foreign, foreign


@pytest.fixture(scope="module")
def int8_export(built):
    return built("ncnn", 416, "--int8", "--calib", CALIB_IMAGES)[0]  # the options test_export_ncnn uses


def test_an_int8_exports_report_in_headless_chromium(int8_export, tmp_path):
    page = int8_export / "report.html"
    html = page.read_text()
    assert_self_contained(html, [str(int8_export), str(VAL_IMAGES)])
    parity = json.loads((int8_export / "parity.json").read_text())["artifacts"][0]
    assert len(parity["differing_images"]) == 6  # INT8 moves boxes on more than six val-dev images

    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="yes"' in dom.stdout and "data-js-errors" not in dom.stdout  # the scripts ran, no error
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line], dom.stderr[-2000:]
    assert 'data-verdict="pass"' in dom.stdout and "PASSED · ncnn int8" in dom.stdout
    assert "map_drop_points" in dom.stdout and "mAP lost by class" in dom.stdout
    pairs = re.findall(r'<div class="pair" data-image="([^"]+)">(.*?)</div>', dom.stdout, re.S)
    assert [name for name, _ in pairs] == [(d["image"].rsplit("/", 1)[-1]) for d in parity["differing_images"]]
    for _, pair in pairs:  # one picture, drawn under PyTorch's and under the artifact's boxes, unmatched marked
        assert pair.count('href="data:image/jpeg;base64,') == 1 and pair.count("<use ") == 2
        assert pair.count('class="box reference') >= 1 and pair.count('class="box artifact') >= 1
        assert 'unmatched"' in pair

    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,1800", page.as_uri())
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    image = cv2.imread(str(screenshot))
    assert image.shape[:2] == (1800, 1280) and image.std() > 20  # a page was drawn, not a blank canvas


def test_report_rebuilds_from_the_json_and_reads_images_only_where_told(int8_export, tmp_path):
    rebuilt = tmp_path / "again.html"
    result = run_cli("report", int8_export, "--out", rebuilt, "--images", VAL_IMAGES)
    assert result.returncode == 0, result.stderr
    assert rebuilt.read_text().count('href="data:image/jpeg;base64,') == 6
    # without --images the JSON's image paths are not read: a parity.json is untrusted input
    result = run_cli("report", int8_export / "parity.json", "--out", tmp_path / "bare.html")
    assert result.returncode == 0, result.stderr
    bare = (tmp_path / "bare.html").read_text()
    assert "data:image/jpeg" not in bare and "pass --images" in bare

    crafted = tmp_path / "crafted"
    crafted.mkdir()
    document = json.loads((int8_export / "parity.json").read_text())
    document["artifacts"][0]["differing_images"][0]["image"] = str(VAL_IMAGES / ".." / ".." / ".." / "weights" /
                                                                    "nanodet-plus-m_416.pth")
    (crafted / "parity.json").write_text(json.dumps(document))
    result = run_cli("report", crafted, "--images", VAL_IMAGES)
    assert result.returncode == 0, result.stderr
    assert (crafted / "report.html").read_text().count('href="data:image/jpeg;base64,') == 5  # 5 of 6 shown

    (crafted / "parity.json").write_text("{ not json")
    for bad, message in ((crafted, "not JSON"), (tmp_path / "missing", "no such file or folder"),
                         (tmp_path, "no parity.json in this folder")):
        result = run_cli("report", bad)
        assert result.returncode == 2 and len(error_lines(result)) == 1 and message in result.stderr, result.stderr


def test_the_phone_section_renders_and_refuses_malformed_entries(int8_export, tmp_path):
    """parity.json's "phone" list (`verify --arch arm64`; tests/test_phone.py makes real ones) is untrusted input
    like the rest: rendered as the Phone table, a wrong type is one line and exit 2."""
    document = json.loads((int8_export / "parity.json").read_text())
    artifact = document["artifacts"][0]
    entry = {"cpu": "cortex-a76", "mode": "int8", "fast_fp16": False, "required": True, "images": 79,
             "passed": True, "same_as_export": 79,
             "app_decodes_as_toolkit": 79, "same_tolerance": {"score": 1e-4, "iou": 0.999},
             "gate": artifact, "versus_export": artifact}
    fast = {**entry, "mode": "int8 + fast fp16", "fast_fp16": True, "required": False, "passed": False,
            "gate": {**artifact, "checks": [{"metric": "agreement", "passed": False, "value": 0.6}]}}
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "parity.json").write_text(json.dumps({**document, "phone": [entry, fast]}))
    result = run_cli("report", folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "report.html").read_text()
    assert 'data-phone="cortex-a76 int8"' in page and 'data-phone="cortex-a76 int8 + fast fp16"' in page
    assert "over budget: agreement (the opt-in Fast fp16" in page
    for broken, field in (({**entry, "images": "many"}, "phone[0].images"),
                          ({**entry, "versus_export": {**artifact, "agreement": [1]}}, "phone[0].versus_export.agreement"),
                          ("cortex", "phone[0]: an object expected"), ({**entry, "required": "yes"}, "phone[0].required")):
        (folder / "parity.json").write_text(json.dumps({**document, "phone": [broken]}))
        result = run_cli("report", folder)
        assert result.returncode == 2 and len(error_lines(result)) == 1 and field in result.stderr, result.stderr


def _refused(result, *words) -> None:
    """Exit 2 with one line that says each of ``words`` (the file, the field, the problem)."""
    assert result.returncode == 2 and len(error_lines(result)) == 1, result.stderr
    assert all(str(w) in result.stderr for w in words), result.stderr


def _report(*args, timeout=120) -> subprocess.CompletedProcess:
    """`nanodet-deploy report` with a short timeout: a hang (a FIFO read) is a failure here, not 15 minutes."""
    return subprocess.run([sys.executable, "-m", "nanodet_deploy", "report", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_report_reads_only_small_regular_json_files(int8_export, tmp_path):
    """What `report` is handed is untrusted: a FIFO or device (blocked forever at 5c11f11), a file far over the
    size a result JSON has (read whole before, 2.1 GB peak for 1 GiB), JSON nested 100,000 deep (a traceback)
    are each one line, exit 2, and read no further than needed."""
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    _refused(_report(fifo), fifo, "not a regular file")
    _refused(_report("/dev/zero"), "/dev/zero", "not a regular file")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB that takes no disk
    started = time.monotonic()
    _refused(_report(huge), huge, "over the 8 MiB")
    assert time.monotonic() - started < 60
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    _refused(_report(deep), deep, "nested more than 16 levels")
    nested = 1
    for _ in range(17):
        nested = [nested]
    deep.write_text(json.dumps({"artifacts": [{"x": nested}]}))
    _refused(_report(deep), deep, "nested more than 16 levels")

    # a FIFO among the images a crafted parity.json names: the strip skips it instead of blocking on it
    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "0.jpg")
    document = json.loads((int8_export / "parity.json").read_text())
    document["artifacts"][0]["differing_images"][0]["image"] = str(images / "0.jpg")
    crafted = tmp_path / "parity.json"
    crafted.write_text(json.dumps(document))
    result = _report(crafted, "--images", images, "--out", tmp_path / "page.html")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "page.html").read_text().count('href="data:image/jpeg;base64,') == 0


def test_a_wrong_field_in_a_parity_or_bench_json_is_named(int8_export, tmp_path):
    """A field of the wrong type (a ratio that is text, a list where an object belongs) is one line that names the
    field by its path, exit 2; at 5c11f11 these ended in tracebacks or rendered garbage."""
    document = json.loads((int8_export / "parity.json").read_text())
    artifact = document["artifacts"][0]
    bad_parity = [({**artifact, "images": "79"}, "artifacts[0].images", "whole number"),
                  ({**artifact, "score_cosine": [1]}, "artifacts[0].score_cosine", "a number"),
                  ({**artifact, "passed": "yes"}, "artifacts[0].passed", "true or false"),
                  ({**artifact, "checks": [{"metric": "agreement", "value": {}, "passed": None}]},
                   "artifacts[0].checks[0].value", "a number"),
                  ({**artifact, "differing_images": [{**artifact["differing_images"][0], "reference": [
                      {"label": 1, "score": 0.5, "box": [1, 2, 3], "matched": True}]}]},
                   "artifacts[0].differing_images[0].reference[0].box", "a list of 4"),
                  ({**artifact, "map_drop_points_interval": "narrow"}, "artifacts[0].map_drop_points_interval", "a list"),
                  ({"backend": "ncnn"}, "artifacts[0].artifact", "missing")]
    path = tmp_path / "parity.json"
    for broken, field, problem in bad_parity:
        path.write_text(json.dumps({**document, "artifacts": [broken]}))
        _refused(_report(path), path, field, problem)
    path.write_text(json.dumps({**document, "budgets": {"int8_agreement": "high"}}))
    _refused(_report(path), path, "budgets.int8_agreement", "a number")

    bench = json.loads((Path(__file__).parents[1] / "benchmarks/results/amd-epyc.json").read_text())
    row = bench["rows"][0]
    bad_bench = [({**bench, "rows": [{**row, "ratio": "1.0"}]}, "rows[0].ratio", "a finite number"),
                 ({**bench, "rows": [{**row, "infer_ms": float("nan")}]}, "rows[0].infer_ms", "a finite number"),
                 ({**bench, "rows": [{**row, "threads": 0}]}, "rows[0].threads", "whole number"),
                 ({**bench, "machine": ["AMD"]}, "machine", "an object"),
                 ({**bench, "machine": {**bench["machine"], "versions": ["onnxruntime", "1.0"]}}, "machine.versions",
                  "an object"),
                 ({**bench, "rows": [{**row, "backend": None}]}, "rows[0].backend", "text")]
    path = tmp_path / "bench.json"
    for broken, field, problem in bad_bench:
        path.write_text(json.dumps(broken))
        _refused(_report(path), path, field, problem)
    path.write_text(json.dumps(bench))
    assert _report(path).returncode == 0  # the untouched file renders


def test_the_report_schemas_list_what_the_writers_write():
    """The typed schemas (report.PARITY_JSON, BENCH_JSON) name every field the writers write: a field added to
    ParityReport, PhoneReport or a bench row without a type would be dropped from the page unnoticed."""
    from dataclasses import fields

    from nanodet_deploy import bench_results, report
    from nanodet_deploy.bench_cells import Cell, CellResult
    from nanodet_deploy.parity import ParityReport
    from nanodet_deploy.phone import PhoneReport

    assert set(report.ARTIFACT_FIELDS) == {f.name for f in fields(ParityReport)}
    gate = ParityReport(artifact="x", backend="ncnn", precision="int8", runtime_precision="int8", inputs="images",
                        images=1)
    assert set(report.PHONE_FIELDS) == set(PhoneReport("cortex-a76", "int8", False, 1, gate, gate).to_dict())
    timing = {"median": 1.0, "p90": 1.0, "min": 1.0}
    result = CellResult(Cell("onnxruntime", "fp32", (416, 416), 2), preprocess_ms=timing, inference_ms=timing,
                        postprocess_ms=timing, total_ms=timing, fps_sequential=1.0, fps_pipelined=1.0)
    assert set(bench_results.BENCH_ROW_FIELDS) == set(bench_results.rows([result])[0])


# Run inside the page by Chromium: every table (and what scrolls) ends inside the 1280 px window, nothing wider
# than its box; the findings go into the DOM that --dump-dom prints.
MEASURE_LAYOUT = """<script>
(function () {
  const width = document.documentElement.clientWidth, over = [];
  for (const el of document.querySelectorAll("table, .wide")) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 || el.scrollWidth > el.clientWidth + 1) {
      over.push(el.tagName + "." + el.className + " right " + Math.round(box.right) + " of " + width);
    }
  }
  document.body.setAttribute("data-overflow", JSON.stringify(over));
  document.body.setAttribute("data-window", String(width));
})();
</script>"""


def overflowing(page: Path, tmp_path: Path) -> list[str]:
    measured = tmp_path / f"measured-{page.name}"
    measured.write_text(page.read_text().replace("</body>", MEASURE_LAYOUT + "</body>"))
    dom = chromium("--window-size=1280,1800", "--dump-dom", measured.as_uri())
    assert dom.returncode == 0 and 'data-window="1280"' in dom.stdout, dom.stderr[-2000:]
    return json.loads(html.unescape(re.search(r'data-overflow="([^"]*)"', dom.stdout).group(1)))


def test_the_pages_fit_a_1280_px_window(int8_export, tmp_path):
    """With 346f7c8's styles the budget notes (a sentence each) stretched the checks table to 1,703 px and bench's
    table was 1,505 px wide, both behind a scrollbar; now headers and text wrap and figures stay on one line. Measured on
    the suite's INT8 export (its notes made as long as the gate writes them: two at once) and on a bench JSON of
    every backend with the throughput columns."""
    document = json.loads((int8_export / "parity.json").read_text())
    long_note = ("79 images cannot decide a 1.0-point budget: the 90% interval of the drop is [-0.42, 1.37] points; "
                 "only 12 PyTorch detections >= 0.3 on these images; INT8 needs 20")
    for check in document["artifacts"][0]["checks"]:
        check["note"] = long_note
    (tmp_path / "parity.json").write_text(json.dumps(document))
    bench = json.loads((Path(__file__).parents[1] / "benchmarks/results/amd-epyc.json").read_text())
    for row in bench["rows"]:
        row.update(fps_sequential=123.4, fps_pipelined=234.5, pipelined_x=1.9, infer_vs_fp32=0.74, accepted=True)
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    for source in (int8_export, tmp_path / "parity.json", tmp_path / "bench.json"):
        page = tmp_path / f"{Path(source).stem}.html"
        assert _report(source, "--out", page).returncode == 0
        assert overflowing(page, tmp_path) == [], source
