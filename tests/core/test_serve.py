"""The demo page in a real browser: headless Chromium (driven by Selenium) uploads a photo, picks the task, submits,
and the page's result equals the Python API's for the same photo; a bad upload gets the CLI's one-line message;
nothing is fetched from outside the machine."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image

from segsuite.core.api import Segmenter
from segsuite.core.serve import Shown, build_app, csv_markdown, launch
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.synthetic import make_dataset, render_scene
from tests.helpers import untrained_checkpoint

try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser test says so
    webdriver = None

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
NO_BROWSER = ("selenium is not installed (pip install -e '.[dev]')" if webdriver is None else
              "headless Chromium and chromedriver are not installed (`make browser`: apt-get install chromium "
              "chromium-driver) and could not be installed here" if not (CHROMIUM and DRIVER) else None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def road_checkpoint(tmp_path) -> Path:
    """An untrained road-scene checkpoint (small U-Net) with the meta of synthetic Cityscapes-layout scenes."""
    root = make_dataset(tmp_path / "cityscapes", n_train=2, n_val=1, size=(32, 64), seed=1)
    meta = json.loads(json.dumps(build_datasets(str(root))["train"].meta))
    return untrained_checkpoint(tmp_path / "models" / "road" / "model.ckpt", meta, "road_scene")


@pytest.fixture
def page(road_checkpoint, tmp_path):
    """The demo page over the checkpoints in ``models/``, served on 127.0.0.1, and a headless Chromium."""
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    app = build_app(tmp_path / "models", tmp_path / "cache", tmp_path / "work")
    port = _free_port()
    launch(app, port=port, block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    try:
        yield driver, f"http://127.0.0.1:{port}/"
    finally:
        driver.quit()
        app.close()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _upload(driver, path: Path) -> None:
    """Clear the upload box if it holds a file, then upload ``path``."""
    for clear in driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']"):
        clear.click()
    wait = WebDriverWait(driver, 30)
    field = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    field.send_keys(str(path))
    wait.until(lambda d: path.stem in d.find_element(By.ID, "upload").text)


def _submit(driver, task: str, expect: str) -> str:
    """Pick ``task``, press Submit and wait until the status box shows ``expect``; returns the status."""
    driver.find_element(By.CSS_SELECTOR, f"#task input[value='{task}']").click()
    driver.find_element(By.ID, "submit").click()
    status = driver.find_element(By.CSS_SELECTOR, "#status textarea")
    WebDriverWait(driver, 60).until(lambda d: expect in (status.get_attribute("value") or ""))
    return status.get_attribute("value")


def test_upload_a_photo_submit_and_read_back_the_result(page, road_checkpoint, tmp_path):
    driver, url = page
    Image.fromarray(render_scene((96, 192), 4)[0]).save(tmp_path / "street.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    segmenter = Segmenter.from_checkpoint(road_checkpoint, device="cpu")
    expected = segmenter.predict(tmp_path / "street.png", mode="panoptic")

    driver.get(url)
    _upload(driver, tmp_path / "broken.png")
    assert _submit(driver, "semantic", "error:").startswith("error: cannot read image")  # the CLI's line
    _upload(driver, tmp_path / "street.png")
    assert "done: street.png" in _submit(driver, "panoptic", "done:")

    result = driver.find_element(By.CSS_SELECTOR, "#result-image img")
    shown = np.asarray(Image.open(io.BytesIO(_fetch(urljoin(url, result.get_attribute("src"))))).convert("RGB"))
    np.testing.assert_array_equal(shown, expected.colorize())
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
    images = [Image.open(io.BytesIO(_fetch(link))) for link in links if link.endswith("/street.png")]
    (labels,) = [image for image in images if image.mode == "L"]  # labels/ (color/ and overlay/ are RGB)
    label_ids = np.asarray(labels)  # Cityscapes label ids
    to_train = np.full(256, 255, np.int64)
    to_train[segmenter.meta["native_ids"]] = np.arange(len(segmenter.meta["native_ids"]))
    np.testing.assert_array_equal(to_train[label_ids], expected.classes)
    assert str(len(expected.instance_table)) in driver.find_element(By.CSS_SELECTOR, "#status textarea") \
        .get_attribute("value")
    legend = driver.find_element(By.ID, "legend").text
    assert all(name in legend for name, _ in expected.legend(present_only=True))

    driver.save_screenshot(str(tmp_path / "demo.png"))
    if os.environ.get("SEGSUITE_DEMO_SCREENSHOT"):
        shutil.copy(tmp_path / "demo.png", os.environ["SEGSUITE_DEMO_SCREENSHOT"])
    outside = [u for u in _requested_urls(driver) if not u.startswith((url, "data:", "blob:"))]
    assert not outside, f"the page fetched from outside the machine: {outside[:5]}"


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_volumes_are_shown_slice_by_slice():
    volume = np.arange(4 * 5 * 6 * 3, dtype=np.uint8).reshape(4, 5, 6, 3)
    shown = Shown(volume, volume[..., ::-1])
    assert shown.depth == 4
    image_in, image_out = shown.slice(10)  # past the end: the last slice
    assert (image_out == volume[3]).all() and (image_in == volume[3, ..., ::-1]).all()
    assert Shown(volume[0], None).depth == 0


def test_domain_reports_become_markdown_tables(tmp_path):
    (tmp_path / "areas.csv").write_text("name,hectares\nforest,12.3456789\nroad,2\n")
    text = csv_markdown(tmp_path / "areas.csv")
    assert text.splitlines()[2:] == ["| name | hectares |", "|---|---|", "| forest | 12.35 |", "| road | 2 |"]
