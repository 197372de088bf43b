"""The web page in a real browser: headless Chromium driven through chromedriver by Selenium.

Skipped, with the reason, where Debian's ``chromium`` and ``chromium-driver`` are not installed
(``.ci/run`` installs them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import random_image, tiny_model_folder

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)

pytestmark = pytest.mark.browser

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("python_multipart", reason="the web extra is not installed: pip install -e '.[web]'")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from fast_style.web.app import create_app  # noqa: E402
from fast_style.web.server import BackgroundServer  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = tiny_model_folder(tmp_path_factory.mktemp("browser_models"))
    app = create_app([models], shipped=False, device="cpu", allowed_hosts=["127.0.0.1", "localhost"])
    with BackgroundServer(app) as running:
        yield running.url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # An explicit driver and browser: Selenium Manager has nothing to look up or download.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_file(folder: Path, name: str, timeout: float = 30) -> Path:
    target = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.exists() and not list(folder.glob("*.crdownload")):
            return target
        time.sleep(0.1)
    raise AssertionError(
        f"{name} was not downloaded; the folder holds {sorted(p.name for p in folder.iterdir())}"
    )


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_page_stylizes_a_photo_and_downloads_it(
    browser, server: str, downloads: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    random_image((96, 64), seed=3).save(photo)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'input[name="model"]')) == 2)
    assert "20 MB" in browser.find_element(By.ID, "limits").text

    status = browser.find_element(By.ID, "status-text")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda d: status.text.startswith("Done") and "tiny_a" in status.text)
    assert "96×64" in status.text

    # another style
    browser.find_element(By.CSS_SELECTOR, 'input[name="model"][value="tiny_b"]').click()
    wait.until(lambda d: status.text.startswith("Done") and "tiny_b" in status.text)
    link = browser.find_element(By.ID, "download")
    assert link.is_displayed() and link.get_attribute("download") == "photo_tiny_b.png"
    link.click()
    styled = _wait_for_file(downloads, "photo_tiny_b.png")
    assert Image.open(styled).format == "PNG" and Image.open(styled).size == (96, 64)
    assert np.abs(_pixels(styled) - _pixels(photo)).mean() > 5  # stylized, not the photo

    # strength 0 through the slider's keyboard control gives back the photo itself
    first_result = link.get_attribute("href")
    slider = browser.find_element(By.ID, "strength")
    slider.send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "strength-value").text == "0%"
    wait.until(lambda d: link.get_attribute("href") != first_result and status.text.startswith("Done"))
    link.click()
    faded = _wait_for_file(downloads, "photo_tiny_b (1).png")
    assert Image.open(faded).size == (96, 64)
    assert np.abs(_pixels(faded) - _pixels(photo)).max() <= 1
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_page_explains_a_bad_file(browser, server: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n" * 10)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'input[name="model"]')) == 2)
    browser.find_element(By.ID, "file").send_keys(str(notes))
    error = browser.find_element(By.ID, "error")
    wait.until(lambda d: error.is_displayed())
    assert "notes.txt is not an image" in error.text
    assert not browser.find_element(By.ID, "download").is_displayed()
