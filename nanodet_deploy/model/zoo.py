"""Presets of the official NanoDet-Plus models and their release checkpoints, with a download cache."""

from __future__ import annotations

import os
import tempfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DownloadError
from ..files import cache_dir, download, sha256_file  # noqa: F401  (cache_dir, sha256_file: this module's API)
from .config import ModelSpec

RELEASE_URL = "https://github.com/RangiLyu/nanodet/releases/download/v1.0.0-alpha-1/{name}.pth"

# (model_size, backbone stage channels feeding the PAN, PAN/head width) of the two official widths.
_WIDTHS = {
    "nanodet-plus-m": ("1.0x", (116, 232, 464), 96),
    "nanodet-plus-m-1.5x": ("1.5x", (176, 352, 704), 128),
}


def _preset(family: str, size: int) -> ModelSpec:
    model_size, in_channels, width = _WIDTHS[family]
    return ModelSpec(
        name=f"{family}_{size}",
        backbone=dict(model_size=model_size, out_stages=(2, 3, 4), activation="LeakyReLU"),
        fpn=dict(in_channels=in_channels, out_channels=width, kernel_size=5, num_extra_level=1,
                 use_depthwise=True, activation="LeakyReLU"),
        head=dict(num_classes=80, input_channel=width, feat_channels=width, stacked_convs=2, kernel_size=5,
                  strides=(8, 16, 32, 64), reg_max=7, activation="LeakyReLU"),
        input_size=(size, size),
    )


PRESETS: dict[str, ModelSpec] = {
    f"{family}_{size}": _preset(family, size) for family in _WIDTHS for size in (320, 416)
}


@dataclass(frozen=True)
class ZooEntry:
    url: str
    # The release page publishes no checksums. None means trust-on-first-use: the sha256 of the first
    # download is stored beside the file and every later use is checked against it.
    sha256: str | None = None


ZOO = {name: ZooEntry(RELEASE_URL.format(name=name)) for name in PRESETS}


def get_preset(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}' (presets: {', '.join(PRESETS)}; or pass --config my.yml)") \
            from None


def fetch_checkpoint(name: str, progress: bool = True) -> Path:
    """The cached release checkpoint of zoo model ``name``; downloaded once (temp file + rename)."""
    if name not in ZOO:
        raise ConfigError(f"unknown zoo model '{name}' (zoo: {', '.join(ZOO)})")
    entry = ZOO[name]
    target = cache_dir() / f"{name}.pth"
    recorded = target.with_suffix(".pth.sha256")
    if target.exists():
        expected = entry.sha256 or (recorded.read_text().strip() if recorded.exists() else None)
        if expected and sha256_file(target) != expected:
            raise DownloadError(f"{target}: checksum mismatch (expected sha256 {expected}); delete it to "
                                f"download again")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = download(entry.url, out, name if progress else None)
        if entry.sha256 and digest != entry.sha256:
            raise DownloadError(f"{entry.url}: downloaded file has sha256 {digest}, expected {entry.sha256}")
        os.replace(tmp, target)
        recorded.write_text(digest + "\n")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise DownloadError(f"cannot download {entry.url} ({reason}); put that file at {target} "
                            f"(NANODET_DEPLOY_CACHE sets the folder) or pass a local --checkpoint") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
