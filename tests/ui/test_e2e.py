"""End to end: ``metalab ui`` in headless Chromium (Debian's chromium + chromedriver, Selenium).

A real uvicorn server on a free port serves the generated store (a sweep
with series, an image artifact, failed runs, a running run) as a FileStore,
and in one test the same store on PostgreSQL; the browser clicks through
every page, checks what is shown and saves screenshots
(``ui-*.png``) in ``$METALAB_UI_SCREENSHOTS`` (default: a folder in the temp
directory; ``METALAB_UI_SCREENSHOTS=docs/img`` refreshes the ones docs/ui.md shows).  The driver path is given explicitly,
so Selenium never downloads a browser or driver.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from ui_store import EXPERIMENT, RUNNING_ID, SCRIPT

from metalab.store import make_store
from metalab.ui import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("METALAB_UI_SCREENSHOTS")
             or Path(tempfile.gettempdir()) / "metalab-ui-screenshots")
#: seconds a page element may take to appear (a loaded CI machine)
WAIT_S = 30
WINDOW = (1400, 1000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serve(target: Any) -> Iterator[str]:
    """The UI over the store ``target`` names, served by uvicorn in a thread; yields its URL."""
    import uvicorn

    store = make_store(target)
    port = _free_port()
    config = uvicorn.Config(create_app(store, locator="./experiments"), host="127.0.0.1",
                            port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started:
        assert time.monotonic() < deadline, "the UI server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(WAIT_S)
        store.close()


@pytest.fixture(scope="module")
def server(file_store_root: str) -> Iterator[str]:
    """The UI over the generated FileStore."""
    with _serve(file_store_root) as url:
        yield url


@pytest.fixture(scope="module")
def pg_server(pg_store_config: Any) -> Iterator[str]:
    """The UI over the generated store on PostgreSQL (its index answers the queries)."""
    with _serve(pg_store_config) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver "
                        "(scripts/test.sh does)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--use-gl=swiftshader",
                "--enable-unsafe-swiftshader"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, css: str) -> Any:
    return WebDriverWait(driver, WAIT_S).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _click_and_load(driver: Any, element: Any, css: str) -> Any:
    """Click ``element`` (which loads another page) and wait for ``css`` on the NEW page
    (waiting on the old page's element would race with the navigation)."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, WAIT_S).until(ec.staleness_of(old))
    return _wait(driver, css)


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"ui-{name}.png"))


def _scroll_to(driver: Any, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)


def _all_pages(driver: Any) -> list[str]:
    """The run ids shown on every page of the runs view, following "next page" (each
    click waits for the new page, never reading the old one)."""
    seen: list[str] = []
    while True:
        _wait(driver, "table#runs")
        seen += [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.run-link")]
        following = driver.find_elements(By.ID, "next-page")
        if not following:
            return seen
        _click_and_load(driver, following[0], "table#runs")


def _rendered(driver: Any, chart: Any) -> Any:
    """``chart`` scrolled into view (charts draw only when visible) and drawn."""
    _scroll_to(driver, chart)
    WebDriverWait(driver, WAIT_S).until(lambda d: chart.get_attribute("data-rendered") == "1")
    return chart


def _loaded_image(driver: Any) -> Any:
    """The run page's image artifact, scrolled into view and decoded by the browser."""
    image = _wait(driver, "img.artifact-image")
    _scroll_to(driver, image)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    return image


def _no_alert(driver: Any) -> None:
    """The escaped ``<script>alert(1)</script>`` values never ran."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - raises when no alert is open


def test_experiments_page(server: str, browser: Any) -> None:
    browser.get(server + "/")
    row = _wait(browser, f'tr[data-experiment="{EXPERIMENT}"]')
    success = row.find_element(By.CSS_SELECTOR, '[data-count="success"]')
    WebDriverWait(browser, WAIT_S).until(lambda d: success.text == "12")  # (counted by the API)
    assert row.find_element(By.CSS_SELECTOR, '[data-count="success"]').text == "12"
    assert row.find_element(By.CSS_SELECTOR, '[data-count="failed"]').text == "6"
    assert row.find_element(By.CSS_SELECTOR, '[data-count="running"]').text == "1"
    assert SCRIPT in row.text  # shown as text
    _no_alert(browser)
    _shot(browser, "experiments")
    row.find_element(By.LINK_TEXT, EXPERIMENT).click()
    _wait(browser, "table#runs")
    assert browser.current_url.endswith(f"/experiments/{EXPERIMENT}")


def test_runs_page_filter_columns_pages_and_snippets(server: str, browser: Any) -> None:
    browser.get(f"{server}/experiments/{EXPERIMENT}")
    where = _wait(browser, "#where")
    where.send_keys("params.lr < and")
    browser.find_element(By.ID, "apply").click()
    error = _wait(browser, "#query-error")
    assert "params.lr < and\n" in error.text and error.text.rstrip().endswith("^")
    where = browser.find_element(By.ID, "where")
    where.clear()
    where.send_keys("params.lr < 0.5")
    _click_and_load(browser, browser.find_element(By.ID, "apply"), "table#runs")
    assert len(browser.find_elements(By.CSS_SELECTOR, "a.run-link")) == 12
    assert "where=params.lr" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "#picker summary").click()
    browser.find_element(By.ID, "picker-filter").send_keys("score")
    boxes = [b for b in browser.find_elements(By.CSS_SELECTOR, ".picker-list input")
             if b.is_displayed()]
    assert [b.get_attribute("value") for b in boxes] == ["metrics.score"]
    boxes[0].click()  # (uncheck: the default columns include it)
    boxes[0].click()
    _click_and_load(browser, browser.find_element(By.ID, "apply"), "table#runs")
    header = browser.find_element(By.CSS_SELECTOR, "table#runs thead").text
    assert "metrics.score" in header
    _click_and_load(browser, browser.find_element(By.LINK_TEXT, "metrics.score"), "table#runs")
    assert "sort=metrics.score" in browser.current_url
    browser.find_element(By.ID, "copy-python").click()
    snippet = _wait(browser, "#snippet:not([hidden])")
    WebDriverWait(browser, WAIT_S).until(lambda d: "load_results" in snippet.text)
    assert "where='params.lr < 0.5'" in snippet.text
    _shot(browser, "runs")


def test_runs_page_next_page_group_and_compare(server: str, browser: Any) -> None:
    browser.get(f"{server}/experiments/{EXPERIMENT}?sort=-metrics.score&limit=5")
    counts = _wait(browser, "#counts")
    WebDriverWait(browser, WAIT_S).until(lambda d: "running: 1" in counts.text)
    assert "failed: 6" in counts.text and "18 / 19 finished" in counts.text
    seen = _all_pages(browser)
    assert len(seen) == 19 and len(set(seen)) == 19
    browser.get(f"{server}/experiments/{EXPERIMENT}?sort=-metrics.score")
    _wait(browser, "table#runs")
    badges = {b.text for b in browser.find_elements(By.CSS_SELECTOR, "table#runs .badge")}
    assert {"running", "failed", "success"} <= badges
    picks = browser.find_elements(By.CSS_SELECTOR, "input.pick-run")[:3]
    for p in picks:
        p.click()
    browser.find_element(By.ID, "compare").click()
    table = _wait(browser, "#compare-table")
    assert browser.current_url.count(",") == 2 or "%2C" in browser.current_url
    assert table.find_elements(By.CSS_SELECTOR, "tr.differs")
    chart = _wait(browser, ".chart[data-src]")
    _rendered(browser, chart)
    browser.execute_script("window.scrollTo(0, 0);")
    _shot(browser, "compare")
    browser.get(f"{server}/experiments/{EXPERIMENT}?group=1&columns=params.lr,params.model,"
                "metrics.score")
    grouped = _wait(browser, "table#grouped")
    assert len(grouped.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 6
    _no_alert(browser)
    _shot(browser, "grouped")


def _open_run(browser: Any, server: str, where: str) -> None:
    browser.get(f"{server}/experiments/{EXPERIMENT}?where={where}")
    _wait(browser, "a.run-link").click()
    _wait(browser, "#params")


def test_run_page_with_artifacts_series_and_log(server: str, browser: Any) -> None:
    _open_run(browser, server, 'params.lr = 0.01 and params.model = "resnet"')
    _loaded_image(browser)
    weights = browser.find_element(By.CSS_SELECTOR, '.artifact[data-name="weights"] .preview')
    _scroll_to(browser, weights)
    WebDriverWait(browser, WAIT_S).until(lambda d: "shape [3, 4]" in weights.text)
    summary = browser.find_element(By.CSS_SELECTOR, '.artifact[data-name="summary"] .preview')
    WebDriverWait(browser, WAIT_S).until(lambda d: SCRIPT in summary.text)
    chart = browser.find_element(By.CSS_SELECTOR, "#series .chart")
    _rendered(browser, chart)
    assert chart.find_elements(By.CSS_SELECTOR, ".main-svg")
    assert chart.find_element(By.CSS_SELECTOR, ".ytitle").text == "loss"  # (not "value")
    log = browser.find_element(By.CSS_SELECTOR, "pre.log")
    _scroll_to(browser, log)
    WebDriverWait(browser, WAIT_S).until(lambda d: "finished with" in log.text)
    assert SCRIPT in log.text
    _no_alert(browser)
    browser.execute_script("window.scrollTo(0, 0);")
    _shot(browser, "run")
    _scroll_to(browser, browser.find_element(By.ID, "artifacts"))
    _shot(browser, "run-artifacts")


def test_failed_and_running_runs(server: str, browser: Any) -> None:
    _open_run(browser, server, 'status = "failed"')
    error = _wait(browser, "#error")
    assert "ValueError" in error.text and "diverged at lr=1.0" in error.text
    assert "Traceback" in browser.find_element(By.CSS_SELECTOR, "pre.traceback").text
    _shot(browser, "failed")
    browser.get(f"{server}/runs/{RUNNING_ID}")
    status = _wait(browser, "#run-status")
    assert status.text == "running" and status.get_attribute("data-live")
    log = browser.find_element(By.CSS_SELECTOR, "pre.log")
    WebDriverWait(browser, WAIT_S).until(lambda d: "step 2" in log.text)


def test_plot_page(server: str, browser: Any) -> None:
    browser.get(f"{server}/experiments/{EXPERIMENT}/plot")
    Select(_wait(browser, "#kind")).select_by_visible_text("line")
    Select(browser.find_element(By.ID, "axis-x")).select_by_visible_text("params.lr")
    Select(browser.find_element(By.ID, "axis-y")).select_by_visible_text("metrics.score")
    Select(browser.find_element(By.ID, "axis-group")).select_by_visible_text("params.model")
    chart = _rendered(browser, _click_and_load(browser, browser.find_element(By.ID, "draw"),
                                               "#plot"))
    assert chart.find_elements(By.CSS_SELECTOR, ".main-svg")
    _no_alert(browser)
    _shot(browser, "plot")


def test_every_page_on_postgres(pg_server: str, browser: Any) -> None:
    """The same store on PostgreSQL: counts, pages, a run with its artifacts and series,
    the live log of a running run and a plot, as the browser shows them."""
    browser.get(pg_server + "/")
    row = _wait(browser, f'tr[data-experiment="{EXPERIMENT}"]')
    success = row.find_element(By.CSS_SELECTOR, '[data-count="success"]')
    WebDriverWait(browser, WAIT_S).until(lambda d: success.text == "12")
    assert row.find_element(By.CSS_SELECTOR, '[data-count="failed"]').text == "6"
    _click_and_load(browser, row.find_element(By.LINK_TEXT, EXPERIMENT), "table#runs")
    browser.get(f"{pg_server}/experiments/{EXPERIMENT}?limit=5")
    seen = _all_pages(browser)  # the default order: keyset pages of run ids, from the index
    assert len(seen) == 19 and len(set(seen)) == 19
    _open_run(browser, pg_server, 'params.lr = 0.01 and params.model = "resnet"')
    _loaded_image(browser)
    chart = browser.find_element(By.CSS_SELECTOR, "#series .chart")
    _rendered(browser, chart)
    assert chart.find_element(By.CSS_SELECTOR, ".ytitle").text == "loss"
    browser.get(f"{pg_server}/runs/{RUNNING_ID}")
    log = _wait(browser, "pre.log")
    WebDriverWait(browser, WAIT_S).until(lambda d: "step 2" in log.text)
    browser.get(f"{pg_server}/experiments/{EXPERIMENT}/plot?kind=line&x=params.lr"
                "&y=metrics.score&group=params.model")
    plot = _rendered(browser, _wait(browser, "#plot"))
    assert plot.find_elements(By.CSS_SELECTOR, ".main-svg")
    _no_alert(browser)

