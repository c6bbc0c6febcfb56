"""Put an ncnn export into the Android demo app: its .param / .bin and nanodet.json into
``<app>/app/src/main/assets/``, which is all the app reads (input size, mean/std, strides, reg_max, classes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UsageError
from .targets import APP_BACKEND
from .files import atomic_path
from .manifest import MANIFEST_NAME, ManifestError, inside, read_manifest

ASSETS = Path("app/src/main/assets")


def install_into_app(export_dir: str | Path, app_dir: str | Path) -> list[Path]:
    """Copy the model files of the ncnn export in ``export_dir`` and its manifest into the app's assets
    (each written to a temporary name and renamed; the manifest last). Returns the files written."""
    export_dir, app_dir = Path(export_dir), Path(app_dir)
    if not (app_dir / "app" / "build.gradle.kts").is_file():
        raise UsageError(f"{app_dir}: not the Android demo project (no app/build.gradle.kts)")
    manifest = read_manifest(export_dir)
    if manifest.backend != APP_BACKEND:
        raise UsageError(f"{export_dir}: a {manifest.backend} export; the Android demo runs ncnn exports "
                         f"(nanodet-deploy export --to ncnn)")
    if "weights" not in manifest.files:
        raise ManifestError(f"{export_dir / MANIFEST_NAME}: an ncnn export lists its weights file (files.weights)")
    assets = app_dir / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    written = []
    # read_manifest checked every name: plain names of regular files inside export_dir, checksums matching
    for name in [manifest.files["model"], manifest.files["weights"], MANIFEST_NAME]:
        with atomic_path(assets / name) as tmp:
            shutil.copyfile(inside(export_dir, name), tmp)
        written.append(assets / name)
    for old in assets.glob("*"):  # a previous model's files under other names
        if old.suffix in (".param", ".bin") and old not in written:
            old.unlink()
    return written
