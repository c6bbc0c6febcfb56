"""report.html: rendered from the JSON the tools write, opened in a real headless Chromium (Debian's
`chromium`; .ci/run installs it), self-contained (no URLs, no machine paths beyond the ones the user gave)."""

import json
import re
import shutil
import subprocess

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
def int8_export(ncnn_416_export):
    return ncnn_416_export("m416-int8", "--int8", "--calib", CALIB_IMAGES)[0]  # the options test_export_ncnn uses


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
    assert "map_drop" in dom.stdout and "mAP lost by class" in dom.stdout
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
    for broken in ({**entry, "images": "many"}, {**entry, "versus_export": {"agreement": [1]}}, "cortex",
                   {**entry, "required": "yes"}):
        (folder / "parity.json").write_text(json.dumps({**document, "phone": [broken]}))
        result = run_cli("report", folder)
        assert result.returncode == 2 and len(error_lines(result)) == 1 and "malformed 'phone' entry" in result.stderr, \
            result.stderr
