"""Hardening: files that are not what they claim are refused in one line (exit 2) naming the file, without torch's
advice to load them unsafely, and a refused command writes nothing."""

from __future__ import annotations

import io
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.cli import run
from segsuite.core.errors import DataError
from segsuite.core.export import export
from segsuite.core.serve import WORK_PREFIX, find_checkpoints
from segsuite.domains.toy.data import toy_sample
from tests.export_checks import predict_with
from tests.helpers import ROOT, compose_config


class Payload:
    """Pickled, it runs ``os.system`` when unpickled (refused by safe loading)."""

    def __reduce__(self):
        return (os.system, ("true",))


def _pickle_checkpoint(path: Path) -> Path:
    torch.save({"hyper_parameters": {"model": {}}, "payload": Payload()}, path)
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _export_status(checkpoint: Path, output: Path, *extra: str) -> int:
    try:
        run(export, compose_config("export", [f"checkpoint={checkpoint}", f"output={output}", *extra]))
    except SystemExit as exit:
        return int(exit.code)
    return 0


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in.npy"
    np.save(path, toy_sample(7, 40, 3, 3, 255)[0])
    return path


def test_a_pickle_payload_is_refused_in_one_line_without_torchs_advice(tmp_path, image, capsys):
    evil = _pickle_checkpoint(tmp_path / "evil.ckpt")
    assert predict_with("toy", image, tmp_path / "out.npy", f"checkpoint={evil}") == 2
    message = _one_line(capsys)
    assert str(evil) in message and "posix.system" in message and "weights_only" not in message


def test_an_onnx_file_given_as_a_checkpoint_points_to_runtime_onnx(tmp_path, image, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x08\x08\x12\x07pytorch" * 8)
    assert predict_with("toy", image, tmp_path / "out.npy", f"checkpoint={fake}") == 2
    message = _one_line(capsys)
    assert f"runtime=onnx model_file={fake}" in message and "weights_only" not in message


def test_the_demo_page_skips_bad_checkpoints_with_one_line_each(tmp_path, caplog):
    _pickle_checkpoint(tmp_path / "a.ckpt")
    (tmp_path / "b.ckpt").write_bytes(b"\x08\x01not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert find_checkpoints(tmp_path) == {}
    assert len(caplog.records) == 2
    assert all("\n" not in r.getMessage() and "weights_only" not in r.getMessage() for r in caplog.records)


def test_export_refuses_to_replace_its_own_checkpoint(toy_run, tmp_path, capsys):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes((toy_run / "checkpoints" / "last.ckpt").read_bytes())
    before = ckpt.read_bytes()
    assert _export_status(ckpt, ckpt, "format=torchscript", "overwrite=true") == 2
    assert "is the checkpoint being exported" in _one_line(capsys)
    assert ckpt.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_an_unknown_hyper_parameter_is_one_line_at_export(toy_run, tmp_path, capsys):
    ckpt = torch.load(toy_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["colour_jitter"] = 0.5
    path = tmp_path / "future.ckpt"
    torch.save(ckpt, path)
    assert _export_status(path, tmp_path / "m.onnx") == 2
    message = _one_line(capsys)
    assert str(path) in message and "colour_jitter" in message and not (tmp_path / "m.onnx").exists()


def test_pickle_payload_fixture_really_is_one():
    assert pickle.loads(pickle.dumps(Payload())) == 0  # os.system("true"): what safe loading refuses to run


def test_the_demo_page_on_a_busy_port_is_one_line_and_leaves_no_work_folder(toy_run, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (temp / f"{WORK_PREFIX}{gone.pid}-stale").mkdir()  # a server that died without cleaning up
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "serve.py"), "--models", str(toy_run),
                               "--port", str(port), "--cache", str(tmp_path / "cache")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}: the port"), \
        proc.stderr[-3000:]
    assert not list(temp.glob(WORK_PREFIX + "*"))


@pytest.mark.parametrize("script, args", [
    ("export", ["format=tflite", "output=m.onnx"]),
    ("predict", ["input=missing.npy", "output=out.npy"]),
])
def test_a_refused_command_leaves_no_run_folder(toy_run, tmp_path, script, args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"),
                           f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]
    assert not list(tmp_path.iterdir())  # no outputs/<verb>/<time>/ with its log


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header (IHDR) claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_names_the_limit_and_how_to_raise_it(tmp_path):
    from segsuite.core.images import image_size, read_pixels
    from segsuite.core.serve import error_line

    bomb = _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    for read in (read_pixels, image_size):
        with pytest.raises(DataError) as refused:
            read(bomb)
        message = str(refused.value)
        assert str(bomb) in message and "400,000,000 pixels" in message and "SEGSUITE_MAX_IMAGE_PIXELS" in message
        assert error_line(refused.value) == f"error: {message}" and "\n" not in message  # the page's status line
