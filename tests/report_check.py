"""Open an HTML report in headless Chromium and check it as a reader would.

Checks: every image decodes (naturalWidth > 0), the browser console has no errors, every
navigation link points at an element that exists and clicking it scrolls there.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def check_report(path: Path) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver_path = chromium_paths()  # type: ignore[misc]
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.set_window_size(1300, 900)
        driver.get(path.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        broken = [alt for alt, complete, width in images if not (complete and width > 0)]
        links = driver.find_elements(By.CSS_SELECTOR, "nav a")
        targets = [a.get_attribute("href").split("#", 1)[1] for a in links]
        exists = "return !!document.getElementById(arguments[0]);"
        missing = [t for t in targets if not driver.execute_script(exists, t)]
        scrolled = []
        for link in links[1:4]:
            link.click()
            scrolled.append(driver.execute_script("return window.scrollY;"))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        return {"n_images": len(images), "broken": broken, "n_links": len(links),
                "missing_targets": missing, "scrolled": scrolled, "console_errors": errors,
                "title": driver.title}
    finally:
        driver.quit()
