"""``segsuite report`` (core/report_page.py): one self-contained page per run, CV or sweep folder, every figure
inline and loaded in headless Chromium with the network off; tables in Markdown and LaTeX."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from segsuite.core.cv import summarise
from segsuite.core.errors import ConfigError
from segsuite.core.report_page import write_report

try:
    from selenium import webdriver
except ImportError:
    webdriver = None

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
CLASSES = ["background", "road", "water"]


def _metrics(k: int) -> dict:
    scores = {f"{p}/iou_{c}": 0.2 + 0.1 * i + 0.05 * k for p in ("val", "test") for i, c in enumerate(CLASSES)}
    scores.update({f"{p}/dice_{c}": 0.3 + 0.1 * i for p in ("val", "test") for i, c in enumerate(CLASSES)})
    scores.update({f"{p}/miou": 0.3 + 0.05 * k for p in ("val", "test")})
    return {"val": {k: v for k, v in scores.items() if k.startswith("val")},
            "test": {k: v for k, v in scores.items() if k.startswith("test")},
            "best": {"score": 0.3 + 0.05 * k},
            "test_confusion": {"class_names": CLASSES, "matrix": [[5 + k, 1, 0], [2, 7, 1], [0, 1, 9]]}}


@pytest.fixture
def cv_dir(tmp_path):
    folder = tmp_path / "cv"
    for k in range(3):
        (folder / f"fold_{k}").mkdir(parents=True)
        (folder / f"fold_{k}" / "metrics.json").write_text(json.dumps(_metrics(k)))
    summarise(folder, 3)
    return folder


def _open_offline(page):
    if webdriver is None or not (CHROMIUM and DRIVER):
        pytest.skip("headless Chromium, chromedriver and selenium are needed (`make browser`)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    try:
        driver.get(page.as_uri())
        return driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    finally:
        driver.quit()


def test_cv_report_opens_offline_with_every_figure(cv_dir):
    page = write_report(cv_dir)
    text = page.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched from anywhere
    images = _open_offline(page)
    assert len(images) == 3 and all(done and width > 0 for done, width, _ in images), images
    assert {alt.split(" (")[0].split(",")[0] for _, _, alt in images} >= {"Validation mIoU per fold",
                                                                          "IoU per class", "Confusion matrix"}
    md = (page.parent / "table.md").read_text()
    assert "| road | 0.350 ± 0.050 |" in md  # test IoU of road over folds 0.3, 0.35, 0.4
    assert "$0.350 \\pm 0.050$" in (page.parent / "table.tex").read_text()
    assert {p.name for p in page.parent.glob("*.png")} == {"fold_miou.png", "class_iou.png", "confusion.png"}


def test_an_existing_report_is_kept_without_overwrite(cv_dir):
    page = write_report(cv_dir)
    before = page.read_bytes()
    with pytest.raises(ConfigError, match="exists; give overwrite=true"):
        write_report(cv_dir)
    assert page.read_bytes() == before
    assert write_report(cv_dir, overwrite=True) == page


def test_a_sweep_report_lists_the_trials(tmp_path):
    for n, lr in enumerate(["0.001", "0.01"]):
        job = tmp_path / "sweep" / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / "metrics.json").write_text(json.dumps(_metrics(n)))
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer.lr={lr}"]))
    page = write_report(tmp_path / "sweep")
    md = (page.parent / "table.md").read_text()
    assert "| 1 | COMPLETE | 0.01 |" in md and "| 0 (complete) | 0.300 |" in md
    assert (page.parent / "trials.png").stat().st_size > 0


def test_a_folder_without_results_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="holds no metrics.json"):
        write_report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_a_run_report_and_the_command_line(tmp_path, capsys):
    from segsuite.core.plots import plot_confusion
    from segsuite.scripts.report import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(_metrics(0)))
    plot_confusion([[1, 0], [0, 1]], ["a", "b"], run / "training_curve.png")  # any PNG stands for the curve
    assert main([str(run)]) == 0
    page = run / "report" / "report.html"
    assert page.read_text().count("data:image/png;base64,") == 3  # curve, class IoU, confusion matrix
    assert main([str(run)]) == 2 and "exists; give overwrite=true" in capsys.readouterr().err
    assert main([str(run), "overwrite=yes"]) == 2 and main([str(run), "overwrite=true"]) == 0


def test_examples_are_drawn_over_the_input_with_a_legend(tmp_path):
    import numpy as np

    from tests.helpers import untrained_checkpoint

    meta = {"in_channels": 3, "num_classes": 3, "class_names": CLASSES, "ignore_index": 255, "patch_size": [32, 32]}
    run = tmp_path / "run"
    ckpt = untrained_checkpoint(run / "checkpoints" / "best.ckpt", meta, "toy")
    (run / "metrics.json").write_text(json.dumps({**_metrics(0), "best_checkpoint": str(ckpt)}))
    example = tmp_path / "example.npy"
    np.save(example, np.random.default_rng(0).normal(size=(3, 40, 40)).astype(np.float32))
    page = write_report(run, examples=[str(example)])
    assert "Example 0: example.npy, prediction over the input" in page.read_text()
    assert (page.parent / "example_0.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="examples= needs a run or segsuite cv folder"):
        from segsuite.core.report_examples import model_of

        model_of(tmp_path, "sweep")
