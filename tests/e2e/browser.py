"""Headless Debian Chromium, driven by Selenium through Debian's chromedriver (the same
build, so they always match), for the browser tests of ``/docs`` and ``/admin``.
``make test`` installs both; when they are missing a browser test fails, it never skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root on a machine with no network but loopback: no sandbox, no GPU, and
# none of Chromium's own background connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_SECONDS = 30


def chromium(
    profile: Path, *, size: str = "1280,2000", lang: str = "en-US", flags: tuple[str, ...] = ()
) -> webdriver.Chrome:
    """A fresh headless Chromium with its own profile folder, keeping the page's console;
    ``flags`` are added to the usual ones."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{missing} missing: `make test` installs Debian's chromium + chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, *flags, f"--window-size={size}", f"--lang={lang}"]:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
