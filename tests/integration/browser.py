"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, installed by
``.ci/run``) driven through WebDriver, with axe-core (npm, ``tests/browser``) for WCAG checks."""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# What Chromium needs on this kind of machine: no sandbox (root, containers), no GPU, nothing
# fetched behind the test's back, a fresh profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
A4_PX = (794, 1123)  # 210 x 297 mm at 96 px per inch


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver and AXE.exists()):
        raise RuntimeError(
            "Chromium, chromedriver and axe-core are needed: run .ci/run (it installs "
            "Debian's chromium and chromium-driver, and tests/browser's npm packages)."
        )
    return browser, driver


class Browser:
    def __init__(self) -> None:
        browser, driver = chromium_paths()
        self.profile = tempfile.mkdtemp(prefix="civicbot-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument("--window-size=1280,900")
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)
        self.axe_source = AXE.read_text()

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, url: str) -> None:
        self.driver.get(url)

    @property
    def title(self) -> str:
        return str(self.driver.title)

    def text(self) -> str:
        return str(self.driver.execute_script("return document.body.innerText"))

    def html(self) -> str:
        return str(self.driver.page_source)

    def links(self) -> list[dict[str, str]]:
        return list(
            self.driver.execute_script(
                "return Array.from(document.querySelectorAll('a[href]')).map("
                "a => ({href: a.href, text: a.innerText.trim(), label: a.getAttribute("
                "'aria-label') || ''}))"
            )
        )

    def status_of(self, url: str) -> int:
        """The HTTP status Chromium got for ``url`` (navigation timing of the page)."""
        self.open(url)
        return int(
            self.driver.execute_script(
                "return performance.getEntriesByType('navigation')[0].responseStatus"
            )
        )

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's WCAG 2.2 A/AA violations on the open page. Injected through WebDriver,
        which the page's CSP does not govern (the page itself allows no script)."""
        self.driver.execute_script(self.axe_source)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
            ".then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact:"
            " 'critical', help: String(e), nodes: []}]));",
            WCAG,
        )
        return list(result)

    def phone(self, on: bool) -> None:
        if on:
            self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
            )
        else:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def overflows_horizontally(self) -> bool:
        return bool(
            self.driver.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth + 1"
            )
        )

    def screenshot(self, path: Path, width: int) -> None:
        """The whole page at ``width`` CSS pixels."""
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def print_preview(self, path: Path) -> None:
        """The open page as printed, one A4 sheet, as a PNG (print media emulated)."""
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": A4_PX[0], "height": A4_PX[1], "deviceScaleFactor": 1, "mobile": False},
        )
        # The sheet's 12 mm margins are the printer's (@page), which a screenshot does not add.
        self.driver.execute_script("document.body.style.padding = '12mm'")
        try:
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            path.write_bytes(base64.b64decode(shot["data"]))
        finally:
            self.driver.execute_script("document.body.style.padding = ''")
            self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def print_pdf(self) -> bytes:
        """Print the open page the way ``!noticeboard`` does: the page's own @page size."""
        printed = self.driver.execute_cdp_cmd(
            "Page.printToPDF",
            {"preferCSSPageSize": True, "printBackground": True, "displayHeaderFooter": False},
        )
        return base64.b64decode(printed["data"])
