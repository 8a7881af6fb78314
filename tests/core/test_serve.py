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
from core.serve import build_app, launch
from domains.toy.data import toy_sample

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium and chromedriver are not installed (`make browser`: apt-get install chromium "
           "chromium-driver) and could not be installed here")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def page(toy_run, tmp_path):
    """The demo page over one toy checkpoint, served on 127.0.0.1, and a headless Chromium pointed at it."""
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

