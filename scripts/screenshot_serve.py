"""Make ``docs/serve.png``: the web page with the demo photo in a shipped style, in headless Chromium.

Needs the web and dev extras and Debian's ``chromium`` and ``chromium-driver``:

    python -m scripts.screenshot_serve [--model starry_night] [--output docs/serve.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fast_style.web.app import create_app
from fast_style.web.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="starry_night", help="shipped model to show (default: starry_night)"
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "serve.png"), help="where to write the PNG")
    parser.add_argument("--width", type=int, default=1280, help="page width in pixels")
    parser.add_argument("--height", type=int, default=900, help="page height in pixels")
    parser.add_argument("--split", type=int, default=45, help="before/after divider position in percent")
    args = parser.parse_args()

    app = create_app(shipped=True, device="cpu")
    with tempfile.TemporaryDirectory() as profile, BackgroundServer(app) as server:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            # The page's own size, whatever room the window keeps for itself.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": args.width, "height": args.height, "deviceScaleFactor": 1, "mobile": False},
            )
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 120)
            wait.until(
                lambda d: d.find_elements(By.CSS_SELECTOR, f'input[name="model"][value="{args.model}"]')
            )
            driver.find_element(By.CSS_SELECTOR, f'input[name="model"][value="{args.model}"]').click()
            driver.find_element(By.ID, "demo").click()
            status = driver.find_element(By.ID, "status-text")
            wait.until(lambda d: status.text.startswith("Done") and args.model in status.text)
            driver.execute_script(
                "const s = document.getElementById('split'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('input'));",
                args.split,
            )
            wait.until(lambda d: d.execute_script("return document.getElementById('after').complete"))
            driver.save_screenshot(args.output)
        finally:
            driver.quit()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
