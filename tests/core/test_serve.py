"""The demo page in a real browser: headless Chromium (driven by Selenium) uploads an input, picks the task, submits,
and the page's result equals the Python API's for the same input; nothing is fetched from outside the machine."""

from __future__ import annotations

import io
import os
import shutil
import socket
import urllib.request
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image

from core.api import Segmenter
from core.serve import Shown, build_app, csv_markdown, launch
from domains.toy.data import toy_sample

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
def page(toy_run, tmp_path):
    """The demo page over one toy checkpoint, served on 127.0.0.1, and a headless Chromium pointed at it."""
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(toy_run / "checkpoints" / "last.ckpt", models / "last.ckpt")
    app = build_app(models, tmp_path / "cache", tmp_path / "work")
    port = _free_port()
    launch(app, port=port, block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    try:
        yield driver, f"http://127.0.0.1:{port}/", models / "last.ckpt"
    finally:
        driver.quit()
        app.close()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _submit(driver, task: str, expect: str) -> str:
    """Pick ``task``, press Submit and wait until the status box shows ``expect``; returns the status."""
    driver.find_element(By.CSS_SELECTOR, f"#task input[value='{task}']").click()
    driver.find_element(By.ID, "submit").click()
    status = driver.find_element(By.CSS_SELECTOR, "#status textarea")
    WebDriverWait(driver, 60).until(lambda d: expect in (status.get_attribute("value") or ""))
    return status.get_attribute("value")


def test_upload_submit_and_read_back_the_result(page, tmp_path):
    driver, url, checkpoint = page
    image = toy_sample(11, 80, 3, 3, 255)[0]
    np.save(tmp_path / "scene.npy", image)
    expected = Segmenter.from_checkpoint(checkpoint, device="cpu").predict(image)

    driver.get(url)
    wait = WebDriverWait(driver, 60)
    upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys(str(tmp_path / "scene.npy"))
    wait.until(lambda d: "scene" in d.find_element(By.ID, "upload").text)

    # a toy model has no thing classes: the CLI's one-line message appears on the page
    assert _submit(driver, "instance", "error:").startswith("error: instance segmentation needs a")
    assert "done: scene.npy" in _submit(driver, "semantic", "done:")

    result = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#result-image img")))
    shown = np.asarray(Image.open(io.BytesIO(_fetch(urljoin(url, result.get_attribute("src"))))).convert("RGB"))
    np.testing.assert_array_equal(shown, expected.colorize())
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
    (classes_url,) = [link for link in links if link and ".npy" in link]
    np.testing.assert_array_equal(np.load(io.BytesIO(_fetch(classes_url))), expected.classes)
    table = driver.find_element(By.ID, "class-table").text
    assert all(str(row["pixels"]) in table for row in expected.class_table()), table
    legend = driver.find_element(By.ID, "legend").text
    assert all(name in legend for name, _ in expected.legend(present_only=True))

    driver.save_screenshot(str(tmp_path / "demo.png"))
    if os.environ.get("SEGSUITE_DEMO_SCREENSHOT"):
        shutil.copy(tmp_path / "demo.png", os.environ["SEGSUITE_DEMO_SCREENSHOT"])
    outside = [u for u in _requested_urls(driver) if not u.startswith((url, "data:", "blob:"))]
    assert not outside, f"the page fetched from outside the machine: {outside[:5]}"


def _requested_urls(driver) -> list[str]:
    import json

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
