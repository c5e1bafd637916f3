"""The search page end to end: ``vireid serve`` in a subprocess, driven by a real headless Chromium.

Uses Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``)
through Selenium; without them (or without Selenium) the tests skip and say why.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")

pytestmark = pytest.mark.slow  # a subprocess server (imports torch) and a browser: about 30 s on 2 CPU cores

CHROMIUM = os.environ.get("VIREID_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("VIREID_CHROMEDRIVER") or shutil.which("chromedriver")
SERVER_START_TIMEOUT = 120.0  # seconds: importing torch and loading the model on a busy CPU
PAGE_TIMEOUT = 60.0
TOPK = 5


def _require_browser() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing = " and ".join(n for n, p in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if p is None)
        pytest.skip(f"{missing} not installed (Debian: apt-get install chromium chromium-driver); "
                    "the browser test needs a real headless Chromium")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium, part of the test extras)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _require_browser()  # before the (slow) index is built
    from test_service import shared_search_index

    return shared_search_index(tmp_path_factory)


@pytest.fixture(scope="module")
def server_process(built, tmp_path_factory):
    """``vireid serve`` started on a free port of 127.0.0.1: ``(process, base URL, log file)``."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "vireid", "serve", "--index", str(built["index"]), "--host", "127.0.0.1",
           "--port", str(port), "--max-topk", "20", "--log-level", "warning"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc, f"http://127.0.0.1:{port}", log_path
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def server(server_process, driver):
    """The base URL of ``vireid serve`` once /api/health answers (Chromium starts meanwhile)."""
    import httpx

    proc, url, log_path = server_process
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vireid serve exited with status {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"vireid serve did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{log_path.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def driver(server_process, tmp_path_factory):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def query_path(built) -> Path:
    """An infrared image (SYSU-MM01 camera 3), not in the visible gallery."""
    return sorted((built["data"] / "cam3").rglob("*.jpg"))[0]


def _open_page(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, PAGE_TIMEOUT)
    # the page has read /api/health once the gallery line names the gallery size
    wait.until(ec.text_to_be_present_in_element((By.ID, "gallery-info"), "Gallery:"))
    return wait


def _cards(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results .result-card")


def test_upload_search_and_ranked_grid(driver, server, query_path, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    wait = _open_page(driver, server)
    health = httpx.get(f"{server}/api/health", timeout=10).json()
    assert driver.find_element(By.ID, "gallery-info").text.startswith(f"Gallery: {health['gallery_size']} images (")
    assert Select(driver.find_element(By.ID, "modality")).first_selected_option.get_attribute("value") == "infrared"
    button = driver.find_element(By.ID, "search-button")
    assert not button.is_enabled()  # nothing to search yet

    driver.find_element(By.ID, "image-input").send_keys(str(query_path))
    wait.until(lambda d: d.find_element(By.ID, "search-button").is_enabled())
    assert driver.find_element(By.ID, "query-preview").is_displayed()
    topk = driver.find_element(By.ID, "topk")
    topk.clear()
    topk.send_keys(str(TOPK))
    button.click()
    wait.until(lambda d: len(_cards(d)) == TOPK)

    cards = _cards(driver)
    assert len(cards) == TOPK
    first = cards[0]
    assert first.find_element(By.CLASS_NAME, "rank").text == "#1"
    assert re.fullmatch(r"score -?\d\.\d{3}", first.find_element(By.CLASS_NAME, "score").text)
    assert re.fullmatch(r"camera \d+ \u00b7 visible", first.find_element(By.CLASS_NAME, "camera").text)
    # every card's picture was served by the service and decoded by the browser
    wait.until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('#results img')).every(i => i.complete && i.naturalWidth > 0)"))

    # the grid shows what the API answers for the same query
    api = httpx.post(f"{server}/api/search", files={"image": (query_path.name, query_path.read_bytes(), "image/jpeg")},
                     data={"modality": "infrared", "topk": str(TOPK)}, timeout=60).json()["results"]
    assert [int(c.get_attribute("data-id")) for c in cards] == [r["id"] for r in api]
    for card, hit in zip(cards, api):
        assert card.find_element(By.CLASS_NAME, "rank").text == f"#{hit['rank']}"
        assert card.find_element(By.CLASS_NAME, "score").text == f"score {hit['score']:.3f}"
        assert card.find_element(By.CLASS_NAME, "camera").text == f"camera {hit['camera']} \u00b7 {hit['modality']}"
        assert card.find_element(By.CLASS_NAME, "person").text == f"person {hit['pid']}"
        # the path below the image root, identity folder included (one file name stands under many people)
        assert card.find_element(By.CLASS_NAME, "name").text == hit["path"] and hit["path"].endswith(hit["name"])
        assert re.fullmatch(rf"cam\d/{hit['pid']:04d}/{re.escape(hit['name'])}", hit["path"])
    assert driver.find_element(By.ID, "results-title").text.startswith(f"Ranked gallery: top {TOPK} of ")

    # a click on a result enlarges it: at least 3x its own size, whole pixels, with its neighbours
    cards[0].find_element(By.TAG_NAME, "img").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('viewer').open"))
    assert driver.find_element(By.ID, "viewer-caption").text.startswith("#1 person ")  # HTML collapses spaces
    size = _enlarged(driver, wait)
    assert size["shown_w"] >= 3 * size["natural_w"] and size["shown_h"] >= 3 * size["natural_h"], size
    assert size["shown_w"] % size["natural_w"] == 0 and size["rendering"] == "pixelated", size
    assert len(driver.find_elements(By.CSS_SELECTOR, "#viewer-neighbours li")) == 3  # itself and the next two
    driver.find_element(By.ID, "viewer-next").click()
    wait.until(lambda d: d.find_element(By.ID, "viewer-caption").text.startswith("#2 person "))
    driver.find_element(By.CSS_SELECTOR, "#viewer .viewer-actions form button").click()
    wait.until(lambda d: not d.execute_script("return document.getElementById('viewer').open"))

    # with the query's person id given, correct matches are marked
    driver.find_element(By.ID, "query-pid").send_keys(str(api[0]["pid"]))
    button.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result-card.correct"))
    marked = {int(c.get_attribute("data-id")): "correct" in c.get_attribute("class") for c in _cards(driver)}
    assert marked == {r["id"]: r["pid"] == api[0]["pid"] for r in api}
    assert driver.find_element(By.ID, "results-title").text.endswith(f"person {api[0]['pid']} found at rank 1")

    # an indexed image as the query: its person id is read from the index, and the matches are marked
    driver.find_element(By.ID, "query-pid").clear()
    _cards(driver)[1].find_element(By.TAG_NAME, "img").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('viewer').open"))
    driver.find_element(By.ID, "viewer-search").click()
    wait.until(lambda d: d.find_element(By.ID, "query-pid").get_attribute("value") == str(api[1]["pid"]))
    # the new search's title (a visible query): the previous one's also said "found at rank 1", and its cards
    # are replaced when the new answer arrives
    wait.until(lambda d: d.find_element(By.ID, "drop-hint").text == api[1]["name"]
               and "for the visible query" in (title := d.find_element(By.ID, "results-title").text)
               and title.endswith(f"person {api[1]['pid']} found at rank 1"))
    first_card = _cards(driver)[0]
    assert "correct" in first_card.get_attribute("class")  # the image itself comes back first
    assert driver.find_element(By.ID, "modality").get_attribute("value") == "visible"

    shot = tmp_path / "search.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("VIREID_SCREENSHOT")  # a copy for a person to look at
    if keep:
        shutil.copyfile(shot, keep)


def _enlarged(driver, wait) -> dict:
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('viewer-image'); return i.complete && i.naturalWidth > 0 && i.style.width"))
    return driver.execute_script(
        "const i = document.getElementById('viewer-image'); const r = i.getBoundingClientRect();"
        "return {natural_w: i.naturalWidth, natural_h: i.naturalHeight, shown_w: Math.round(r.width),"
        " shown_h: Math.round(r.height), rendering: getComputedStyle(i).imageRendering};")


def test_phone_layout_collapses_the_query_after_a_search(driver, server, query_path):
    from selenium.webdriver.common.by import By

    driver.set_window_size(390, 844)
    try:
        wait = _open_page(driver, server)
        assert driver.execute_script("return window.innerWidth") <= 640
        form = driver.find_element(By.ID, "search-form")
        header_x = driver.find_element(By.CSS_SELECTOR, "header h1").location["x"]
        assert abs(form.location["x"] - header_x) <= 2  # header and form share one left edge
        driver.find_element(By.ID, "image-input").send_keys(str(query_path))
        wait.until(lambda d: d.find_element(By.ID, "search-button").is_enabled())
        driver.find_element(By.ID, "search-button").click()
        wait.until(lambda d: len(_cards(d)) > 0 and "collapsed" in d.find_element(By.ID, "search-form")
                   .get_attribute("class"))
        height = driver.execute_script("return document.getElementById('search-form').getBoundingClientRect().height")
        assert height <= 70, height  # one line, not half of the 844-px screen
        assert driver.find_element(By.ID, "summary-text").text.startswith(f"{query_path.name} \u00b7 infrared")
        # scrolled down, the one-line query stays at the top and the results get the rest of the screen
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        top = driver.execute_script("return document.getElementById('search-form').getBoundingClientRect().top")
        assert abs(top) <= 1
        # enlarging on a phone still gives at least 3x
        _cards(driver)[0].find_element(By.TAG_NAME, "img").click()
        size = _enlarged(driver, wait)
        assert size["shown_w"] >= 3 * size["natural_w"] and size["shown_w"] <= 390, size
        driver.find_element(By.CSS_SELECTOR, "#viewer .viewer-actions form button").click()
        driver.find_element(By.ID, "edit-query").click()
        assert driver.find_element(By.ID, "drop-zone").is_displayed()
    finally:
        driver.set_window_size(1280, 900)


def test_dropped_image_is_searched(driver, server, query_path):
    from selenium.webdriver.common.by import By

    wait = _open_page(driver, server)
    data = base64.b64encode(query_path.read_bytes()).decode()
    driver.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        """,
        data,
    )
    assert driver.find_element(By.ID, "drop-hint").text == "dropped.jpg"
    topk = driver.find_element(By.ID, "topk")
    topk.clear()
    topk.send_keys("3")
    driver.find_element(By.ID, "search-button").click()
    wait.until(lambda d: len(_cards(d)) == 3 and d.find_element(By.ID, "results-title").text.startswith(
        "Ranked gallery: top 3 "))
    assert [c.find_element(By.CLASS_NAME, "rank").text for c in _cards(driver)] == ["#1", "#2", "#3"]


def test_server_error_is_shown(driver, server, tmp_path):
    from selenium.webdriver.common.by import By

    wait = _open_page(driver, server)
    fake = tmp_path / "notes.jpg"
    fake.write_bytes(b"these are notes, not a JPEG image\n")
    driver.find_element(By.ID, "image-input").send_keys(str(fake))
    wait.until(lambda d: d.find_element(By.ID, "search-button").is_enabled())
    driver.find_element(By.ID, "search-button").click()
    wait.until(lambda d: d.find_element(By.ID, "message").text.startswith("Error 415"))
    message = driver.find_element(By.ID, "message")
    assert "error" in message.get_attribute("class")
    assert message.text == ("Error 415: the uploaded file 'notes.jpg' is not an image in a supported format "
                            "(expected JPEG, PNG, BMP, GIF, TIFF, WEBP)")
