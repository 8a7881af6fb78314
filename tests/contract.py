"""The domain contract: every domain runs predict and evaluate through the one pipeline with the same invariants.

A domain's test module subclasses :class:`DomainContract` in a few lines (as smp's ``BaseModelTester``): it names the
domain, provides a checkpoint trained on its synthetic data, writes inputs, and says how to read an output's
geometry. The invariants checked here hold for every domain; a domain's own tests cover only what is its own.

:class:`DomainContract` holds the invariants that depend on a domain's I/O (geometry, a corrupt input, the evaluate
report, export) and runs for every domain. :class:`CoreInvariants` holds those that are pure core, the same code
for every domain (options are checked by ``InferenceOptions`` and ``Mode``, existing outputs and staging by
``core.io.Staging``): they run once, with the toy domain (tests/domains/toy/test_toy_contract.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segsuite.core.cli import run
from segsuite.core.evaluate import evaluate
from segsuite.core.io import STAGING_PREFIX
from segsuite.core.predict import predict
from tests.helpers import ROOT, compose_config

BAD_OPTIONS = {
    "domain.inference.tile=[64,64] domain.inference.overlap=[64,64]": "must be smaller than tile",
    "domain.inference.tile=[-64,-64]": "tile=",
    "domain.inference.blend=triangle": "blend='triangle'",
    "domain.inference.batch_size=0": "batch_size=0",
    "task=panoptix": "task='panoptix'",
}


class DomainContract:
    """Subclass and fill in the class attributes and the three methods marked ``domain``."""

    domain: str = ""
    export: bool = True  # run the export invariant (toy: tests/core/test_export.py covers it)
    overrides: tuple[str, ...] = ()  # extra predict/evaluate overrides (data root...)
    evaluate_overrides: tuple[str, ...] = ()

    # --- domain: supply these -----------------------------------------------------------------------------------

    @pytest.fixture
    def checkpoint(self) -> Path:
        raise NotImplementedError

    def write_inputs(self, folder: Path, count: int) -> list[Path]:
        """``count`` valid inputs of the domain written into ``folder`` (files or folders), sorted by name."""
        raise NotImplementedError

    def corrupt(self, path: Path) -> None:
        """Damage the input ``path`` so that reading it fails."""
        path.write_bytes(b"this is not an image")

    def geometry(self, path: Path) -> Any:
        """A comparable description of the grid of an input or output file (shape, CRS, transform, affine...)."""
        raise NotImplementedError

    def main_output(self, output: Path, input: Path) -> Path:
        """The file of ``output`` that holds the class map of ``input`` (``output`` is the argument given)."""
        return output

    # --- helpers --------------------------------------------------------------------------------------------------

    def predict(self, checkpoint: Path, input: Path, output: Path, *extra: str) -> int:
        """``predict`` in this process as the CLI runs it; returns the exit status."""
        cfg = compose_config("predict", [f"domain={self.domain}", f"checkpoint={checkpoint}", f"input={input}",
                                         f"output={output}", *self.overrides, *extra])
        try:
            run(predict, cfg)
        except SystemExit as exit:
            return int(exit.code)
        return 0

    # --- the invariants -------------------------------------------------------------------------------------------

    def test_geometry_round_trips(self, checkpoint, tmp_path):
        (image,) = self.write_inputs(tmp_path / "in", 1)
        output = tmp_path / "out" / "pred"
        assert self.predict(checkpoint, image, output) == 0
        assert self.geometry(self.main_output(output, image)) == self.geometry(image)
        assert not list(tmp_path.rglob(STAGING_PREFIX + "*"))

    def test_a_corrupt_second_input_leaves_no_output_of_the_first(self, checkpoint, tmp_path, capsys):
        inputs = self.write_inputs(tmp_path / "in", 2)
        self.corrupt(inputs[1])
        output = tmp_path / "out"
        assert self.predict(checkpoint, tmp_path / "in", output) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and inputs[1].name in err[-1], err
        assert not output.exists() or not any(p.is_file() for p in output.rglob("*"))
        assert not list(tmp_path.rglob(STAGING_PREFIX + "*"))

    def test_evaluate_writes_strict_json_reports(self, checkpoint, tmp_path):
        cfg = compose_config("evaluate", [f"domain={self.domain}", f"checkpoint={checkpoint}",
                                          f"output_dir={tmp_path / 'eval'}", *self.overrides,
                                          *self.evaluate_overrides])
        summary = run(evaluate, cfg)
        assert 0 <= summary["miou"] <= 1
        text = (tmp_path / "eval" / "metrics.json").read_text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
        assert not list(tmp_path.rglob(STAGING_PREFIX + "*"))

    def test_exported_models_predict_what_the_checkpoint_predicts(self, checkpoint, tmp_path):
        """ONNX and TorchScript exports of the domain's checkpoint: logits within 1e-4 and the same classes as the
        network at two sizes, and ``predict runtime=onnx`` writes the classes ``predict`` writes on a domain input."""
        if not self.export:
            pytest.skip("covered by tests/core/test_export.py")
        from tests.export_checks import assert_export_parity, export_file

        (image,) = self.write_inputs(tmp_path / "in", 1)
        for fmt in ("onnx", "torchscript"):
            model = export_file(checkpoint, fmt, tmp_path / f"model.{fmt}")
            assert_export_parity(checkpoint, model, fmt)
        runs = {}
        for runtime, extra in (("torch", ()), ("onnx", (f"model_file={tmp_path / 'model.onnx'}",))):
            output = tmp_path / runtime / "pred"
            assert self.predict(checkpoint, image, output, f"runtime={runtime}", *extra) == 0
            runs[runtime] = self.classes(self.main_output(output, image))
        np.testing.assert_array_equal(runs["onnx"], runs["torch"])

    def classes(self, path: Path) -> np.ndarray:
        """The class map in a main output file (domain: override for formats other than images and NIfTI)."""
        if path.suffix == ".npy":
            return np.load(path)
        if path.name.endswith((".nii", ".nii.gz")):
            import nibabel

            return np.asarray(nibabel.load(path).dataobj)
        import rasterio

        with rasterio.open(path) as src:
            return src.read()


class CoreInvariants:
    """The contract's pure-core invariants; mix into one :class:`DomainContract` subclass (the toy domain's)."""

    def slow_input(self, folder: Path) -> Path:
        """An input that takes a few seconds to predict on one CPU thread (for the kill test; no more: it is predicted
        once more after the kill)."""
        return self.write_inputs(folder, 6)[0].parent

    @pytest.mark.parametrize("options", list(BAD_OPTIONS))
    def test_bad_options_exit_2_with_one_line(self, checkpoint, tmp_path, capsys, options):
        (image,) = self.write_inputs(tmp_path / "in", 1)
        assert self.predict(checkpoint, image, tmp_path / "out", *options.split()) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and BAD_OPTIONS[options] in err[0], err
        assert not (tmp_path / "out").exists()

    def test_existing_outputs_are_kept_without_overwrite(self, checkpoint, tmp_path):
        (image,) = self.write_inputs(tmp_path / "in", 1)
        output = tmp_path / "out" / "pred"
        assert self.predict(checkpoint, image, output) == 0
        main = self.main_output(output, image)
        before = main.read_bytes()
        assert self.predict(checkpoint, image, output) == 2
        assert main.read_bytes() == before
        assert self.predict(checkpoint, image, output, "overwrite=true") == 0

    def test_sigkill_mid_predict_leaves_nothing_and_the_next_run_succeeds(self, checkpoint, tmp_path):
        source = self.slow_input(tmp_path / "in")
        output = tmp_path / "out"
        args = [f"checkpoint={checkpoint}", f"input={source}", f"output={output}", f"hydra.run.dir={tmp_path / 'h'}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "predict.py"), f"domain={self.domain}",
                                 *self.overrides, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(STAGING_PREFIX + "*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "predict finished before it could be killed: make slow_input slower"
        time.sleep(0.2)  # let it write some staged files
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert list(tmp_path.glob(STAGING_PREFIX + "*")), "the killed run left no staging (was it staging?)"
        assert not output.exists() or not any(p.is_file() for p in output.rglob("*"))
        assert self.predict(checkpoint, source, output) == 0  # in this process: the same run, without 5-7 s of imports
        assert any(p.is_file() for p in output.rglob("*"))
        assert not list(tmp_path.rglob(STAGING_PREFIX + "*"))
