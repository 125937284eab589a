"""An operator uses the console, ``/admin`` of the running ``make run`` stack, in a real
browser (headless Debian Chromium, ``tests/e2e/browser.py``): signs in, adds clients,
builds a mailing with a filter and its live audience count, watches it run to the end,
pauses and resumes one, reads its statistics, keeps the stop list, switches to Russian,
and is sent back to sign-in by a refused key. Each screen is checked with axe-core
(``tests/e2e/axe/``, never deployed): no serious or critical violation.

One stack serves the module's tests (it takes 10-20 s to start); each test has its own
browser in the zone Europe/Moscow, 1280x800. Screenshots of the main screens go to a
temporary folder, or to ``$CONSOLE_SCREENSHOTS`` (``make screenshots`` sets it to
``docs/console``): a test run never writes into the repository.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import ROOT
from tests.e2e.browser import WAIT_SECONDS, chromium
from tests.e2e.conftest import DEV_KEY, Stack, start_stack, stop_stack

AXE = ROOT / "tests" / "e2e" / "axe" / "axe.min.js"
ZONE = "Europe/Moscow"
WIDTH, HEIGHT = 1280, 800
XSS = "<img src=x onerror=alert(1)>"
RUN_SECONDS = 90  # a small mailing's end, counts included (they trail the stream)
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        tmp_path_factory.mktemp("console-stack") / "run.log", {"TICK_SECONDS": "1"}
    )
    try:
        yield started
    finally:
        stop_stack(started.process)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Console:
    """The console in one browser, and the API beside it for what a test sets up."""

    def __init__(self, driver: webdriver.Chrome, stack: Stack, shots: Path) -> None:
        self.driver = driver
        self.stack = stack
        self.url = stack.url
        self.shots = shots
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {DEV_KEY}"

    # --- the browser -----------------------------------------------------------------

    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.url}/admin{fragment}")

    def wait(
        self, what: str, condition: Callable[[webdriver.Chrome], T], within: float = WAIT_SECONDS
    ) -> T:
        # A screen re-rendered under the test's feet is looked at again.
        waiting = WebDriverWait(
            self.driver,
            within,
            poll_frequency=0.2,
            ignored_exceptions=[StaleElementReferenceException],
        )
        return waiting.until(condition, message=what)

    def element(self, css: str) -> WebElement:
        return self.wait(
            css,
            lambda d: next(
                iter(e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None
            ),
        )

    def text(self, css: str) -> str:
        return self.element(css).text

    def wait_text(self, css: str, expected: str, within: float = WAIT_SECONDS) -> WebElement:
        def found(d: webdriver.Chrome) -> WebElement | None:
            return next(
                (e for e in d.find_elements(By.CSS_SELECTOR, css) if expected in e.text), None
            )

        return self.wait(f"{expected!r} in {css}", found, within)

    def click(self, css: str) -> None:
        element = self.element(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def type(self, css: str, text: str) -> None:
        element = self.element(css)
        # Select and delete, as a person would: clear() fires no input event, so the
        # page's state would keep the old value.
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.DELETE)
        if text:
            element.send_keys(text)

    def sign_in(self, key: str = DEV_KEY) -> None:
        self.open()
        self.type("#api-key", key)
        self.click("#signin-form button[type=submit]")
        self.element("nav a[href='#/tasks']")

    def shot(self, name: str) -> None:
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def axe(self, screen: str) -> None:
        """No serious or critical accessibility violation on the screen as it is."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        found: Any = self.driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ["violations"]}).then(
              (result) => done(result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}))),
              (error) => done({error: String(error)}));
            """
        )
        assert isinstance(found, list), found
        serious = [v for v in found if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{screen}: {serious}"

    def script_errors(self) -> list[Any]:
        """The page's own errors; answers the API refused (4xx) are logged as network ones."""
        return [
            entry
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and entry.get("source") != "network"
        ]

    # --- the API, for what a test needs in place --------------------------------------

    def add_clients(self, code: str, count: int, tag: str = "", first: int = 0) -> list[str]:
        phones = []
        for n in range(first, first + count):
            phone = f"7{code:0>3}{n:07d}"
            body = {"phone": phone, "code": code, "tag": tag, "utc": "Europe/Moscow"}
            answer = self.api.post(f"{self.url}/api/clients/", json=body, timeout=30)
            assert answer.status_code == 201, answer.text
            phones.append(phone)
        return phones


@pytest.fixture
def console(tmp_path: Path, stack: Stack, shots: Path) -> Iterator[Console]:
    driver = chromium(tmp_path / "profile", size=f"{WIDTH},{HEIGHT}")
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.set_script_timeout(WAIT_SECONDS)
    try:
        yield Console(driver, stack, shots)
    finally:
        driver.quit()


def test_sign_in_languages_a_refused_key_and_sign_out(console: Console) -> None:
    console.open()
    console.element("#signin-form")
    assert console.text("#time-zone") == f"Times in {ZONE}"
    console.axe("sign-in")
    console.shot("sign-in")

    # A wrong key: told next to the field, and nothing kept.
    console.type("#api-key", "not-a-key")
    console.click("#signin-form button[type=submit]")
    assert console.wait_text("#api-key-error", "unknown or revoked key")
    assert console.element("#api-key").get_attribute("aria-invalid") == "true"
    assert console.driver.execute_script("return sessionStorage.length") == 0

    # Served by the local stack: the hint names what prints a key (deployed, it does not:
    # test_the_sign_in_hint_off_the_local_stack).
    assert "make run" in console.text("#api-key-hint")
    console.sign_in()
    console.wait_text("h1", "Mailings")
    stored = console.driver.execute_script("return sessionStorage.getItem('notify.apiKey')")
    assert stored == DEV_KEY
    assert console.driver.execute_script("return localStorage.getItem('notify.apiKey')") is None

    # Russian, kept across a reload (the key too: same tab, same session).
    Select(console.element("#language")).select_by_value("ru")
    console.wait_text("h1", "Рассылки")
    assert console.driver.execute_script("return document.documentElement.lang") == "ru"
    console.driver.refresh()
    console.wait_text("h1", "Рассылки")
    assert console.text("#time-zone") == f"Время в поясе {ZONE}"
    Select(console.element("#language")).select_by_value("en")
    console.wait_text("h1", "Mailings")

    # A key the API refuses (revoked, or wrong) sends the operator back to sign-in.
    console.driver.execute_script("sessionStorage.setItem('notify.apiKey', 'revoked-key')")
    console.open("#/clients")
    console.wait_text("#signin-notice", "refused the key")
    assert console.driver.execute_script("return sessionStorage.length") == 0

    console.sign_in()
    console.click("#sign-out")
    console.wait_text("#signin-notice", "You are signed out.")
    assert console.driver.execute_script("return sessionStorage.length") == 0
    assert console.script_errors() == []


def test_the_sign_in_hint_off_the_local_stack(tmp_path: Path, stack: Stack) -> None:
    """A console opened by a name other than the loopback's (as a deployed one is) does
    not tell the operator about `make run`."""
    port = urlsplit(stack.url).port
    driver = chromium(
        tmp_path / "profile", flags=("--host-resolver-rules=MAP console.example 127.0.0.1",)
    )
    try:
        driver.get(f"http://console.example:{port}/admin")
        hint = WebDriverWait(driver, WAIT_SECONDS).until(
            lambda d: d.find_element(By.ID, "api-key-hint").text, message="the sign-in hint"
        )
        assert "make run" not in hint and "local.keys" not in hint
        assert "kept only until this tab is closed" in hint
    finally:
        driver.quit()


def rows_of(driver: webdriver.Chrome) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#clients-table tr[data-client]")


def test_clients_search_edit_delete_field_errors_and_a_tag_shown_as_text(console: Console) -> None:
    console.add_clients("950", 22, tag="bulk")  # more than a page (20)
    console.sign_in()
    console.open("#/clients")
    console.element("#clients-table tbody tr[data-client]")

    # Add one through the form.
    console.type("#new-client-phone", "79005550001")
    console.type("#new-client-code", "555")
    console.type("#new-client-tag", "vip")
    console.click("#new-client-form button[type=submit]")
    console.wait_text("#clients-message", "added")

    # The API's field errors show next to their fields, its message on top.
    console.type("#new-client-phone", "123")
    console.type("#new-client-code", "555")
    console.click("#new-client-form button[type=submit]")
    assert console.wait_text("#new-client-phone-error", "must be 7 followed by ten digits")
    assert console.text("#new-client-form .form-error") == "The request has invalid fields."

    # A tag that is markup is shown as text: no element made of it, no script run.
    console.type("#new-client-phone", "79005550002")
    console.type("#new-client-tag", XSS)
    console.click("#new-client-form button[type=submit]")
    console.wait_text("#clients-message", "added")
    console.type("#search-code", "555")
    console.click("#client-search button[type=submit]")
    console.wait("code 555's two clients", lambda d: len(rows_of(d)) == 2)
    cell = console.wait_text("#clients-table td.tag", XSS)
    assert cell.text == XSS
    assert console.driver.find_elements(By.CSS_SELECTOR, "main img") == []
    with pytest.raises(NoAlertPresentException):
        console.driver.switch_to.alert.text  # noqa: B018 - raises when there is none

    # Search by code and tag; edit; delete.
    console.type("#search-tag", "vip")
    console.click("#client-search button[type=submit]")
    console.wait(
        "one client left",
        lambda d: len(rows_of(d)) == 1,
    )
    row = console.element("#clients-table tr[data-client]")
    client_id = row.get_attribute("data-client")
    row.find_element(By.XPATH, ".//button[text()='Edit']").click()
    console.type("#edit-client-tag", "gold")
    console.click("#edit-client-form button[type=submit]")
    console.wait_text("#clients-message", f"Client {client_id} saved.")
    assert (
        console.api.get(f"{console.url}/api/clients/{client_id}", timeout=30).json()["tag"]
        == "gold"
    )
    console.type("#search-tag", "gold")
    console.click("#client-search button[type=submit]")
    row = console.wait_text("#clients-table tr[data-client]", "gold")
    row.find_element(By.XPATH, ".//button[text()='Delete']").click()
    console.element(f"#clients-table tr[data-client='{client_id}'] .confirm button.danger").click()
    console.wait_text("#clients-message", f"Client {client_id} deleted.")
    assert console.api.get(f"{console.url}/api/clients/{client_id}", timeout=30).status_code == 404

    # Pages: 20 a page, Next and Previous.
    console.type("#search-code", "950")
    console.type("#search-tag", "")
    console.click("#client-search button[type=submit]")
    console.wait(
        "a full page",
        lambda d: len(rows_of(d)) == 20,
    )
    console.axe("clients")
    console.shot("clients")
    console.click(".pager button:last-child")
    console.wait(
        "the second page",
        lambda d: len(rows_of(d)) == 2,
    )
    console.wait_text(".pager", "Page 2")
    assert console.script_errors() == []


def test_import_clients_from_a_csv_file(console: Console, tmp_path: Path) -> None:
    """The file goes from the browser to the pre-signed URL on the emulator's S3 (another
    origin: the page's policy names it, the bucket's CORS rule answers the preflight),
    then the screen follows the import to its end and the client list shows its rows."""
    upload = tmp_path / "clients.csv"
    upload.write_text(
        "phone,code,tag,utc\n"
        "79120000001,912,imported,Europe/Moscow\n"
        "79120000002,912,imported,UTC\n"
        "12345,912,imported,UTC\n",
        encoding="utf-8",
    )
    console.sign_in()
    console.open("#/clients")
    assert "phone,code,tag,utc" in console.text("#import-columns")
    # The list shows code 912 while the import runs: none yet, then its two clients.
    console.type("#search-code", "912")
    console.click("#client-search button[type=submit]")
    console.wait_text("#clients-table", "No client matches.")

    console.element("#import-file").send_keys(str(upload))
    console.click("#import-form button[type=submit]")
    console.wait(
        "the import is done",
        lambda d: d.find_element(By.ID, "import-progress").get_attribute("data-status") == "done",
        within=60,
    )
    assert console.text("#import-progress") == (
        "Done — rows: 3, created: 2, updated: 0, rejected: 1"
    )
    error_rows = console.driver.find_elements(By.CSS_SELECTOR, "#import-errors tbody tr")
    assert [row.text for row in error_rows] == ["4 phone must be 7 followed by ten digits"]
    report = console.element("#import-report").get_attribute("href")
    assert report.startswith(console.stack.emulator_url), report
    console.wait("the list refreshed", lambda d: len(rows_of(d)) == 2)
    assert sorted(row.text.split()[1] for row in rows_of(console.driver)) == [
        "79120000001",
        "79120000002",
    ]
    console.axe("import")
    console.element("#import-form")
    console.driver.execute_script(
        "document.getElementById('import-form').scrollIntoView({block: 'start'})"
    )
    console.driver.save_screenshot(str(console.shots / "import.png"))
    assert console.script_errors() == []


def test_the_stop_list(console: Console) -> None:
    console.sign_in()
    console.open("#/stoplist")
    console.wait_text("#stoplist-table", "No phone is stopped.")
    console.type("#stop-phone", "12")
    console.click("#stop-form button[type=submit]")
    console.wait_text("#stop-phone-error", "must be 7 followed by ten digits")
    console.type("#stop-phone", "79007654321")
    console.type("#stop-reason", "asked not to be contacted")
    console.click("#stop-form button[type=submit]")
    console.wait_text("#stoplist-table", "asked not to be contacted")
    console.axe("stop list")
    console.shot("stoplist")
    console.click("#stoplist-table button.danger")
    console.click("#stoplist-table .confirm button.danger")
    console.wait_text("#stoplist-message", "79007654321 is no longer stopped.")
    assert console.api.get(f"{console.url}/api/stoplist/", timeout=30).json()["items"] == []
    assert console.script_errors() == []


def new_mailing(
    console: Console, text: str, codes: list[str], tags: tuple[str, ...] = (), rate: str = ""
) -> None:
    console.open("#/tasks")
    console.click("#new-task")
    console.type("#task-text", text)
    for code in codes:
        console.type("#filter-codes", code)
        console.click("#filter-codes-add")
    for tag in tags:
        console.type("#filter-tags", tag)
        console.click("#filter-tags-add")
    if rate:
        console.type("#task-rate", rate)


def preview_count(console: Console, expected: int) -> None:
    console.wait(
        f"the preview counts {expected}",
        lambda d: (
            d.find_element(By.ID, "preview-count").get_attribute("data-count") == str(expected)
        ),
    )


def task_id_shown(console: Console) -> int:
    """The id of the task whose statistics the console went to (#/tasks/<id>)."""
    found = console.wait(
        "the task's screen",
        lambda d: re.fullmatch(r"/tasks/([0-9]+)", urlsplit(d.current_url).fragment),
    )
    return int(found.group(1))


def test_a_mailing_from_the_form_to_its_end(console: Console) -> None:
    phones = console.add_clients("901", 4, tag="gold") + console.add_clients(
        "901", 2, tag="", first=4
    )
    console.add_clients("902", 3, tag="gold")
    before = console.api.get(f"{console.url}/api/tasks/", timeout=30).json()["items"]
    console.sign_in()

    new_mailing(console, "Spring sale", ["901"])
    preview_count(console, 6)
    console.type("#filter-tags", "gold")
    console.click("#filter-tags-add")
    preview_count(console, 4)  # the count follows the filter as it is built
    console.click(".chips button[aria-label='Remove gold']")
    preview_count(console, 6)
    sample = console.driver.find_elements(By.CSS_SELECTOR, "#preview-sample tbody tr")
    assert [row.text.split()[1] for row in sample] == ["901"] * 6
    console.axe("task form")
    console.shot("task-form")

    # A refused field is told next to it; nothing was created.
    console.type("#task-text", "")
    console.click("#task-submit")
    console.wait_text("#task-text-error", "at least 1 character")
    assert console.api.get(f"{console.url}/api/tasks/", timeout=30).json()["items"] == before
    console.type("#task-text", "Spring sale")
    # A tag typed but not added is refused, never dropped: dropped, the filter would be
    # the codes alone, or with no code everyone.
    console.type("#filter-tags", "gold")
    console.click("#task-submit")
    console.wait_text("#filter-tags-error", "“gold” is typed but not added")
    assert console.api.get(f"{console.url}/api/tasks/", timeout=30).json()["items"] == before
    console.type("#filter-tags", "")
    console.click("#task-submit")
    task_id = task_id_shown(console)

    # Its statistics, refreshed while it runs, until the bar is full.
    console.wait(
        "the progress bar completes",
        lambda d: (
            d.find_element(By.ID, "task-progress").get_attribute("data-percent") == "100"
            and "Finished" in d.find_element(By.CSS_SELECTOR, ".heading .status").text
        ),
        within=RUN_SECONDS,
    )
    assert console.text("#counts td[data-status='sent']") == "6"
    assert console.text("#counts td[data-status='total']") == "6"
    assert console.text("#task-progress") == "6 of 6 done (100%)"
    Select(console.element("#message-status")).select_by_value("sent")
    console.wait(
        "six sent messages",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages-table .status-sent")) == 6,
    )

    # A test send, not counted.
    console.type("#test-phones", phones[0])
    console.click("#test-send-form button[type=submit]")
    console.wait_text("#test-results", f"{phones[0]}: Sent")
    # The CSV export: started, polled, then a link to the file (the test send not in it).
    console.click("#export-start")
    console.wait_text("#export-download", "Download CSV (6 rows)")
    csv_url = console.element("#export-download").get_attribute("href")
    exported = requests.get(csv_url, timeout=30)  # no key: the URL is its own signature
    assert exported.status_code == 200
    lines = exported.text.splitlines()
    assert lines[0] == "id,client_id,phone,status,created_at,sent_at,attempts,last_error"
    assert sorted(line.split(",")[2] for line in lines[1:]) == sorted(phones)
    console.axe("statistics")
    console.shot("statistics")

    console.open("#/tasks")
    row = console.element(f"#tasks-table tr[data-task='{task_id}']")
    assert "Finished" in row.text and "6 of 6 done (100%)" in row.text
    console.axe("tasks")
    console.shot("tasks")
    assert console.script_errors() == []


def test_pause_and_resume_a_running_mailing(console: Console) -> None:
    console.add_clients("903", 10)
    console.sign_in()
    # One message a second: it is still running when paused.
    new_mailing(console, "Slow and steady", ["903"], rate="1")
    preview_count(console, 10)
    console.click("#task-submit")
    task_id = task_id_shown(console)
    console.click(f".controls[data-task='{task_id}'] button[data-action='pause']")
    console.wait_text(".heading .status", "Paused")
    console.wait_text("#stats-message", f"Mailing {task_id} is now Paused.")
    paused = console.api.get(f"{console.url}/api/tasks/{task_id}/stats", timeout=30).json()
    assert paused["task"]["status"] == "paused"
    assert paused["messages"]["pending"] > 0  # paused with something left to send
    console.click(f".controls[data-task='{task_id}'] button[data-action='resume']")
    console.wait_text("#stats-message", f"Mailing {task_id} is now")
    console.wait(
        "the resumed mailing ends",
        lambda d: (
            d.find_element(By.ID, "task-progress").get_attribute("data-percent") == "100"
            and "Finished" in d.find_element(By.CSS_SELECTOR, ".heading .status").text
        ),
        within=RUN_SECONDS,
    )
    assert console.text("#counts td[data-status='sent']") == "10"
    assert console.script_errors() == []


def test_the_chart_shows_sends_over_time(console: Console) -> None:
    """GET /api/tasks/{id}/timeline drawn by uPlot (loaded with the first chart)."""
    finished = [
        task["id"]
        for task in console.api.get(f"{console.url}/api/tasks/stats", timeout=30).json()["items"]
        if task["status"] == "finished" and task["messages"]["sent"] > 0
    ]
    assert finished, "run after a mailing has finished"
    console.sign_in()
    console.open(f"#/tasks/{finished[0]}")
    console.element("#chart canvas")
    legend = console.text("#chart .u-legend")
    assert "Sent" in legend and "Failed" in legend
    console.shot("statistics")
    assert console.script_errors() == []


def test_a_scheduled_and_a_cancelled_mailing(console: Console) -> None:
    """From a review: a cancelled mailing is "Отменена" in Russian (a cancelled message
    stays "Отменено"); each progress bar is named by its mailing; a scheduled mailing's
    statistics are not read again every 2 s."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    ids = {}
    for text in ("Later: scheduled", "Never: cancelled"):
        body = {
            "text": text,
            "start_time": tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_time": (tomorrow + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "filter": {"codes": ["999"], "tags": []},
        }
        answer = console.api.post(f"{console.url}/api/tasks/", json=body, timeout=30)
        assert answer.status_code == 201, answer.text
        ids[text] = answer.json()["id"]
    scheduled, cancelled = ids["Later: scheduled"], ids["Never: cancelled"]
    answer = console.api.post(f"{console.url}/api/tasks/{cancelled}/cancel", timeout=30)
    assert answer.json()["status"] == "cancelled", answer.text
    console.sign_in()

    # Every bar has a name of its own.
    console.element(f"#tasks-table tr[data-task='{scheduled}'] progress")
    names = [
        bar.get_attribute("aria-label")
        for bar in console.driver.find_elements(By.CSS_SELECTOR, "#tasks-table progress")
    ]
    assert len(set(names)) == len(names), names
    bar = console.element(f"#tasks-table tr[data-task='{scheduled}'] progress")
    assert bar.get_attribute("aria-label") == "Progress of “Later: scheduled”"

    # A scheduled mailing's statistics: read once, not every 2 s.
    console.open(f"#/tasks/{scheduled}")
    console.wait_text(".heading .status", "Scheduled")
    assert console.element("#task-progress progress").get_attribute("aria-label") == (
        "Progress of “Later: scheduled”"
    )
    time.sleep(7)
    reads = console.driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter((e) => e.name.includes(arguments[0])).length",
        f"/api/tasks/{scheduled}/stats",
    )
    assert reads == 1

    # Russian: the mailing is feminine, a message neuter.
    Select(console.element("#language")).select_by_value("ru")
    console.open("#/tasks")
    row = console.element(f"#tasks-table tr[data-task='{cancelled}'] .status")
    assert row.text == "Отменена"
    console.open(f"#/tasks/{cancelled}")
    console.wait_text(".heading .status", "Отменена")
    assert console.text("#counts .status-cancelled") == "Отменено"
    Select(console.element("#language")).select_by_value("en")
    assert console.script_errors() == []


def test_page_weight_and_time_to_the_first_screen(console: Console) -> None:
    """The figures of docs/performance.md, "Operator console": the files a first visit
    loads (cache off) and the time from navigation start to the first screen shown with
    its data (``data-ready-ms``, set by the console), signed out and signed in."""
    console.driver.execute_cdp_cmd("Network.enable", {})
    console.driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    console.open()
    origin = urlsplit(console.url).netloc
    for screen, key in (("sign-in", None), ("mailings", DEV_KEY)):
        console.driver.execute_script(
            "sessionStorage.clear();"
            "if (arguments[0]) sessionStorage.setItem('notify.apiKey', arguments[0])",
            key,
        )
        console.driver.refresh()
        ready = int(
            console.wait(
                "the first screen",
                lambda d: d.execute_script("return document.documentElement.dataset.readyMs"),
            )
        )
        entries: list[dict[str, Any]] = console.driver.execute_script(
            """return [...performance.getEntriesByType("navigation"),
                       ...performance.getEntriesByType("resource")]
              .map((e) => ({name: e.name, transfer: e.transferSize, body: e.decodedBodySize}))"""
        )
        assert {urlsplit(e["name"]).netloc for e in entries} == {origin}, entries  # offline
        files = [e for e in entries if "/admin" in urlsplit(e["name"]).path]
        names = sorted(urlsplit(e["name"]).path.rsplit("/", 1)[1] for e in files)
        assert "uPlot.esm.js" not in names  # loaded with the first chart only
        raw = sum(e["body"] for e in files)
        transferred = sum(e["transfer"] for e in files)
        print(
            f"console {screen}: {len(files)} files {names}, {raw} bytes, "
            f"{transferred} transferred (headers included), ready at {ready} ms"
        )
        assert raw < 120_000
        assert ready < 10_000
    assert console.script_errors() == []
