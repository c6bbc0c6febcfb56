"""Finding, reading and drawing images. An image is untrusted input: its file size and its declared pixel count
(read from the header, before anything is decoded) are checked against limits first."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import ImageError, UsageError
from .files import open_regular
from .processing import Detections

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Limits, overridable by environment variable. 150 MP is above the largest phone and medium-format photos
# (~100 MP) and decodes to 450 MB; a PNG of 109 KB declaring 30000x30000 (900 MP) decoded to 2.7 GB and then
# crashed cv2.warpPerspective with SIGSEGV. 512 MiB of file is more than any such photo needs.
MAX_PIXELS_ENV, MAX_BYTES_ENV = "NANODET_DEPLOY_MAX_IMAGE_PIXELS", "NANODET_DEPLOY_MAX_IMAGE_BYTES"
DEFAULT_MAX_PIXELS = 150_000_000
DEFAULT_MAX_BYTES = 512 << 20


def _limit(variable: str, default: int) -> int:
    try:
        value = int(os.environ.get(variable, default))
    except ValueError:
        raise UsageError(f"{variable} must be a whole number, got {os.environ[variable]!r}") from None
    return value if value > 0 else default


def max_pixels() -> int:
    return _limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


def max_bytes() -> int:
    return _limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)


# OpenCV's own decoder limit, for formats whose header we do not read; it is read once, at the first decode
# (a malformed NANODET_DEPLOY_MAX_IMAGE_PIXELS is reported when an image is read, not at import)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS",
                      str(max_pixels() if os.environ.get(MAX_PIXELS_ENV, "").isdigit() else DEFAULT_MAX_PIXELS))
import cv2  # noqa: E402


def collect_images(paths) -> list[Path]:
    """Files given directly, plus the images inside given folders (sorted, not recursive)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    if not found:
        raise UsageError(f"no images found in {', '.join(map(str, paths))}")
    return found


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image as ``cv2.imread(path, IMREAD_COLOR)`` gives it (gray, alpha and 16-bit converted).
    Files over the size limit and images declaring more pixels than the pixel limit are refused unread."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or device among the images would block or never end
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes():
                raise ImageError(f"{path}: {size / 2**20:.0f} MiB, over the {max_bytes() / 2**20:.0f} MiB image "
                                 f"file limit ({MAX_BYTES_ENV})")
            declared = header_size(f)
            if declared and declared[0] * declared[1] > max_pixels():
                raise ImageError(f"{path}: declares {declared[0]}x{declared[1]} pixels, over the "
                                 f"{max_pixels():,} pixel limit ({MAX_PIXELS_ENV})")
            f.seek(0)
            data = np.frombuffer(f.read(), dtype=np.uint8)  # not cv2.imread: it cannot say why it failed
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:].tobytes():
        # a JPEG cut short: some decoders return its top part padded with grey instead of failing
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: not a decodable image")
    return image


def header_size(f) -> tuple[int, int] | None:
    """(width, height) an image file declares in its header (PNG, JPEG, BMP, WebP, TIFF), without decoding;
    None for anything else (OpenCV's own limit applies then)."""
    head = f.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head + f.read(32))
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(f, "<" if head[:2] == b"II" else ">")
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(f)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG markers up to the first start-of-frame (SOF0..SOF15 but DHT/JPG/DAC)."""
    f.seek(2)
    for _ in range(10000):
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            f.seek(-1, 1)
            continue
        if kind in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        length = f.read(2)
        if len(length) < 2:
            return None
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        f.seek(struct.unpack(">H", length)[0] - 2, 1)
    return None


def _tiff_size(f, order: str) -> tuple[int, int] | None:
    f.seek(4)
    (offset,) = struct.unpack(order + "I", f.read(4))
    f.seek(offset)
    count_bytes = f.read(2)
    if len(count_bytes) < 2:
        return None
    found = {}
    for _ in range(min(struct.unpack(order + "H", count_bytes)[0], 4096)):
        entry = f.read(12)
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def printable(text) -> str:
    """``text`` (a message, a path) on one line whatever it holds: file-name bytes that are not UTF-8 as \\xNN,
    control characters (newlines, terminal escapes) as escapes, so a file name cannot forge output lines."""
    text = str(text)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def json_path(path) -> str:
    """A path as valid Unicode for JSON: file-name bytes that are not UTF-8 written as \\xNN text (a lone
    surrogate would make the JSON unreadable for strict parsers)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def draw_detections(image: np.ndarray, detections: Detections, class_names, min_score: float = 0.3) -> np.ndarray:
    """A copy of ``image`` with labelled boxes of the detections scoring at least ``min_score``."""
    out = image.copy()
    for box, score, label in zip(detections.boxes, detections.scores, detections.labels):
        if score < min_score:
            continue
        color = tuple(int(c) for c in np.random.default_rng(int(label)).integers(64, 255, 3))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        text = f"{class_names[label]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(out, (x1, max(y1 - th - 4, 0)), (x1 + tw + 2, max(y1, th + 4)), color, -1)
        cv2.putText(out, text, (x1 + 1, max(y1 - 3, th + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return out
