"""A person opens /docs of the running stack in a real browser and sees every operation.

Headless Debian Chromium (``tests/e2e/browser.py``). ``make test`` installs it; when it
is missing this test fails, it never skips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import ROOT
from tests.e2e.browser import WAIT_SECONDS
from tests.e2e.conftest import DEV_KEY, Stack


def documented_operations() -> set[tuple[str, str]]:
    document = json.loads((ROOT / "openapi.json").read_text())
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def listed_operations(driver: webdriver.Chrome) -> set[tuple[str, str]]:
    listed = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
            "data-path"
        )
        listed.add((method.upper(), str(path)))
    return listed


def try_it_out(driver: webdriver.Chrome, operation_id: str) -> tuple[int, Any]:
    """Open an operation, press "Try it out" and "Execute"; the status and JSON body."""
    wait = WebDriverWait(driver, WAIT_SECONDS)
    block = driver.find_element(By.ID, operation_id)
    summary = block.find_element(By.CSS_SELECTOR, ".opblock-summary")
    # In the middle of the window first: with the page as long as it is now (issue 18's
    # routes), a click scrolled to the edge lands on the block above it.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
    wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, ".execute"))[0].click()
    rows = ".live-responses-table tr.response"
    row = wait.until(lambda _: block.find_elements(By.CSS_SELECTOR, rows))[0]
    status = int(row.find_element(By.CSS_SELECTOR, ".response-col_status").text)
    body = row.find_element(By.CSS_SELECTOR, ".microlight").text
    return status, json.loads(body)


def test_docs_page_lists_every_operation_and_calls_the_api(
    stack: Stack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    expected = documented_operations()
    browser.get(f"{stack.url}/docs")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= 19)
    browser.save_screenshot(str(tmp_path / "docs.png"))

    assert "Notification service API" in browser.find_element(By.CSS_SELECTOR, ".title").text
    assert listed_operations(browser) == expected
    # Every route docs/SPEC.md lists, as a person reads them on the page.
    spec_routes = {
        ("POST", "/api/clients"),
        ("POST", "/api/clients/{client_id}"),
        ("PATCH", "/api/clients/{client_id}"),
        ("DELETE", "/api/clients/{client_id}"),
        ("GET", "/api/clients"),
        ("GET", "/api/clients/{client_id}"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/stats"),
        ("GET", "/api/tasks/{task_id}/stats"),
        ("POST", "/api/tasks/{task_id}"),
        ("PATCH", "/api/tasks/{task_id}"),
        ("DELETE", "/api/tasks/{task_id}"),
        ("POST", "/api/tasks/process"),
        ("GET", "/api/tasks"),
        ("GET", "/api/tasks/{task_id}"),
        ("GET", "/api/health"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    }
    assert spec_routes <= listed_operations(browser)

    # "Try it out": with the key given to "Authorize", the page calls this very API.
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    key_input = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".modal-ux input"))[0]
    key_input.send_keys(DEV_KEY)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .modal-btn.auth").click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()
    assert try_it_out(browser, "operations-service-health") == (200, {"status": "ok"})
    status, body = try_it_out(browser, "operations-clients-list_clients")
    assert (status, body) == (200, {"items": [], "next": None})
    browser.save_screenshot(str(tmp_path / "try-it-out.png"))

    # Offline: everything the page loaded came from the API itself.
    loaded: list[Any] = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    origin = urlsplit(stack.url)
    assert {urlsplit(url).netloc for url in loaded} == {origin.netloc}, loaded
    assert any(url.endswith("/docs/swagger-ui-bundle.js") for url in loaded)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
