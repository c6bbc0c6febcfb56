"""Zoo names resolve to a cached release checkpoint: downloaded once (here from a loopback server), checked,
and offline a one-line error says which file to put where. No test touches the internet."""

import http.server
import threading
import urllib.error
import urllib.request

import pytest

from nanodet_deploy import Detector
from nanodet_deploy.errors import DownloadError
from nanodet_deploy.model import zoo

from .helpers import VAL_IMAGES, weights

NAME = "nanodet-plus-m_416"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NANODET_DEPLOY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """Serves the real 416 weights at the zoo URL's file name, on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    (served / f"{NAME}.pth").write_bytes(weights(416).read_bytes())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{NAME}.pth"
    monkeypatch.setitem(zoo.ZOO, NAME, zoo.ZooEntry(url))
    yield server
    server.shutdown()


def test_cached_checkpoint_is_used_without_network(cache, no_network):
    cache.mkdir()
    (cache / f"{NAME}.pth").write_bytes(weights(416).read_bytes())
    import cv2
    detector = Detector(checkpoint=NAME)
    dets = detector(cv2.imread(str(VAL_IMAGES / "000000000139.jpg")))
    assert detector.name == NAME and len(dets) > 0


def test_offline_without_cache_says_which_file_to_put_where(cache, no_network):
    with pytest.raises(DownloadError) as info:
        zoo.fetch_checkpoint(NAME, progress=False)
    message = str(info.value)
    assert "\n" not in message and str(cache / f"{NAME}.pth") in message and zoo.ZOO[NAME].url in message
    assert not list(cache.glob("*.part"))  # no half-written file left behind


def test_download_once_then_verify(cache, release_server, monkeypatch):
    path = zoo.fetch_checkpoint(NAME, progress=False)
    assert path == cache / f"{NAME}.pth" and path.read_bytes() == weights(416).read_bytes()
    recorded = (cache / f"{NAME}.pth.sha256").read_text().strip()
    assert recorded == zoo.sha256_file(weights(416))
    release_server.shutdown()  # a second use must not download again
    assert zoo.fetch_checkpoint(NAME, progress=False) == path
    corrupted = bytearray(path.read_bytes())
    corrupted[-1] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        zoo.fetch_checkpoint(NAME, progress=False)


def test_published_checksum_is_enforced(cache, release_server, monkeypatch):
    monkeypatch.setitem(zoo.ZOO, NAME, zoo.ZooEntry(zoo.ZOO[NAME].url, sha256="0" * 64))
    with pytest.raises(DownloadError, match="expected 0000"):
        zoo.fetch_checkpoint(NAME, progress=False)
    assert not (cache / f"{NAME}.pth").exists()


def test_download_with_progress_bar(cache, release_server):
    path = zoo.fetch_checkpoint(NAME, progress=True)
    assert zoo.sha256_file(path) == zoo.sha256_file(weights(416))
