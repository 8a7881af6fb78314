"""Land-cover rasters read from URLs: a Cloud-Optimized GeoTIFF served over HTTP by a small Range-capable server on
127.0.0.1 predicts exactly as the local file does, with windowed reads; bad URLs and s3 without network fail in one
line naming the URL; remote outputs are refused."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.windows import Window

import segsuite.core.cli
import segsuite.core.predict
from segsuite.core.errors import DataError
from segsuite.domains.landcover.io import gdal_path, location_name, open_raster, read_window, remote_env
from segsuite.domains.landcover.synthetic import make_scene
from tests.helpers import compose_config

SIZE, BLOCK = 512, 128  # the COG: 4x4 tiles of 128 px (GDAL's smallest COG block), overviews, 4 uint16 bands (the
# tiny checkpoint's layout)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves the files of ``root`` with single ``Range: bytes=a-b`` requests (206 Partial Content), as object
    stores do (``http.server``'s own handler ignores Range); counts the body bytes sent per path."""

    root: Path
    served: Counter
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._reply(body=False)

    def do_GET(self) -> None:
        self._reply(body=True)

    def _reply(self, body: bool) -> None:
        name = self.path.split("?", 1)[0].lstrip("/")
        file = self.root / name
        if not name or not file.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = file.read_bytes()
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if wanted:
            start = int(wanted[1])
            end = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
            chunk = data[start : end + 1]
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            chunk = data
            self.send_response(HTTPStatus.OK)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if body:
            with self.lock:  # counted before sending: the client may look as soon as it has the bytes
                self.served[name] += len(chunk)
            self.wfile.write(chunk)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Counter]]:
    """``(base URL, served folder, bytes served per file name)`` of a Range-capable HTTP server on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    handler = type("Handler", (RangeHandler,), {"root": root, "served": Counter()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler.served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def cog(server: tuple[str, Path, Counter], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic scene (nodata border) as a COG in the served folder."""
    tmp = tmp_path_factory.mktemp("scene")
    image, _ = make_scene(tmp / "scene.tif", tmp / "labels.tif", SIZE, SIZE, seed=11, bands=4)
    path = server[1] / "scene.tif"
    rasterio.shutil.copy(image, path, driver="COG", BLOCKSIZE=BLOCK, COMPRESS="DEFLATE", OVERVIEWS="AUTO")
    return path


def predict_cli(capsys, ckpt: Path, input: str | Path, output: Path, *overrides: str) -> tuple[int, str]:
    """``segsuite predict domain=landcover`` in-process (as the other land-cover CLI tests): (exit code, stderr)."""
    cfg = compose_config("predict", ["domain=landcover", f"checkpoint={ckpt}", f"input='{input}'", f"output={output}",
                                     "domain.inference.tile=[128,128]", "domain.inference.overlap=[32,32]",
                                     *overrides])
    try:
        segsuite.core.cli.run(segsuite.core.predict.predict, cfg)
    except SystemExit as exit_info:
        return int(exit_info.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_a_url_predicts_exactly_as_the_local_file(server, cog, tiny_checkpoint, tmp_path, capsys):
    base, _, _ = server
    code, err = predict_cli(capsys, tiny_checkpoint, cog, tmp_path / "local" / "pred.tif",
                            "domain.writer.preview=false")
    assert code == 0, err
    (tmp_path / "remote").mkdir()  # an existing folder: outputs named after the URL's file, query string stripped
    code, err = predict_cli(capsys, tiny_checkpoint, f"{base}/scene.tif?token=a/b", tmp_path / "remote")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "remote")) == ["scene.tif", "scene_areas.csv", "scene_areas.json",
                                                       "scene_preview.png"]
    with rasterio.open(tmp_path / "local" / "pred.tif") as a, rasterio.open(tmp_path / "remote" / "scene.tif") as b, \
            rasterio.open(cog) as src:
        assert (b.crs, b.transform, b.shape, b.nodata) == (src.crs, src.transform, src.shape, 255)
        assert (b.crs, b.transform, b.nodata, b.dtypes) == (a.crs, a.transform, a.nodata, a.dtypes)
        np.testing.assert_array_equal(b.read(), a.read())
        assert (b.read(1) == 255).sum() > 0 and (b.read(1) < 6).sum() > 0  # the nodata border and classes


def test_a_window_read_fetches_a_small_part_of_the_file(server, cog, tmp_path):
    base, root, served = server
    (root / "window.tif").write_bytes(cog.read_bytes())  # a URL of its own: GDAL caches what it fetched per URL
    with open_raster(f"{base}/window.tif") as src:  # the header and the last tile (the truncation check)
        image, valid = read_window(src, Window(BLOCK, BLOCK, BLOCK, BLOCK), [1, 2, 3, 4])
    with rasterio.open(cog) as local:
        np.testing.assert_array_equal(image, local.read(window=Window(BLOCK, BLOCK, BLOCK, BLOCK)).astype(np.float32))
    assert valid.all() and 0 < served["window.tif"] < 0.5 * cog.stat().st_size, (served, cog.stat().st_size)
    with open_raster(f"/vsicurl/{base}/window.tif") as src:  # a GDAL path as written
        assert (src.count, src.block_shapes[0]) == (4, (BLOCK, BLOCK))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.tif", None, "remote raster not found (HTTP 404)"),
    ("notes.tif", b"not a raster\n" * 100, "not a GeoTIFF"),
    ("", None, "the URL names no file"),
])
def test_a_bad_url_is_one_line_naming_it_and_writes_nothing(name, content, message, server, tiny_checkpoint,
                                                           tmp_path, capsys):
    base, root, _ = server
    if content is not None:
        (root / name).write_bytes(content)
    code, err = predict_cli(capsys, tiny_checkpoint, f"{base}/{name}", tmp_path / "out" / "pred.tif")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {base}/{name}: {message}"), err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_a_remote_output_is_refused(cog, tiny_checkpoint, tmp_path, capsys):
    code, err = predict_cli(capsys, tiny_checkpoint, cog, "s3://bucket/pred.tif")
    assert code == 2 and "output s3://bucket/pred.tif: writing to a URL or GDAL /vsi path is not supported" in err


def test_s3_reaches_gdal_as_vsis3_and_fails_in_one_line_without_network(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in {"AWS_NO_SIGN_REQUEST": "YES", "AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO",
                       "AWS_VIRTUAL_HOSTING": "FALSE", "GDAL_HTTP_MAX_RETRY": "0",
                       "GDAL_HTTP_CONNECTTIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        open_raster("s3://bucket/tiles/scene.tif")
    message = str(info.value)
    assert message.startswith("s3://bucket/tiles/scene.tif (GDAL path /vsis3/bucket/tiles/scene.tif): ")
    assert "\n" not in message and time.monotonic() - start < 5


def test_gdal_options_hold_only_inside_our_reads_and_the_environment_wins(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    with remote_env("https://h.org/scene.tif"):
        assert rasterio.env.get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") == "EMPTY_DIR"
        assert rasterio.env.get_gdal_config("CPL_VSIL_CURL_ALLOWED_EXTENSIONS") == ".tif,.tiff"
        assert rasterio.env.get_gdal_config("GDAL_HTTP_MAX_RETRY") == 0  # not our 3
    assert rasterio.env.get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") is None
    with remote_env("/vsicurl/https://h.org/download?id=3"):  # a GDAL path as written: no extension filter
        assert rasterio.env.get_gdal_config("CPL_VSIL_CURL_ALLOWED_EXTENSIONS") is None
    with remote_env(Path("scene.tif")):  # a local file: nothing set
        assert rasterio.env.get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") is None


def test_url_names_and_gdal_paths():
    assert location_name("https://h.org/a/b/scene.tif?X-Amz-Signature=x/y") == "scene.tif"
    assert location_name("/vsis3/bucket/key/s2.tiff") == "s2.tiff"
    assert location_name("https://h.org:8080/") == location_name("https://h.org") == ""
    assert gdal_path("https://h.org/a/scene.tif?x=1") == "/vsicurl/https://h.org/a/scene.tif?x=1"
    assert gdal_path(Path("https://h.org/a/scene.tif")) == "/vsicurl/https://h.org/a/scene.tif"  # pathlib's "https:/"
    assert gdal_path("s3://bucket/key/scene.tif") == "/vsis3/bucket/key/scene.tif"
    assert gdal_path("/vsizip//data/a.zip/scene.tif") == "/vsizip//data/a.zip/scene.tif"
    with pytest.raises(DataError, match=r"ftp://h/x.tif: URL scheme ftp:// is not supported; give an https://"):
        gdal_path("ftp://h/x.tif")
