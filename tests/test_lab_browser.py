"""The browser lab driven in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium):
every number the page shows after a click equals the engine's after the same actions."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from lrlab.lab import Sheet, race
from lrlab.lab.server import create_app
from lrlab.lab.session import LabSession
from tests.conftest import require

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "lab-serve.png"


@pytest.fixture(scope="module")
def lab_url():
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(LabSession()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(lab_url):
    require(CHROMIUM is not None and CHROMEDRIVER is not None, "Debian's chromium and chromium-driver are needed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="lrlab-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.get(lab_url)
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(condition)


def act(driver, do) -> None:
    """Do something on the page and wait until the page has drawn the server's answer."""
    body = driver.find_element("tag name", "body")
    before = int(body.get_attribute("data-actions"))
    do()
    wait_for(driver, lambda d: int(d.find_element("tag name", "body").get_attribute("data-actions")) > before)


def click(driver, element_id: str) -> None:
    act(driver, lambda: driver.find_element("id", element_id).click())


def fill(driver, element_id: str, text: str) -> None:
    """Select what a box holds, type over it and leave it (a change event), as a user does."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text, Keys.TAB)


def type_into(driver, element_id: str, text: str) -> None:
    """Type into a box whose change is an action (the lr and beta cells) and wait for the answer."""
    act(driver, lambda: fill(driver, element_id, text))


def choose(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    act(driver, lambda: Select(driver.find_element("id", element_id)).select_by_value(value))


def shown(driver, element_id: str) -> float:
    return float(driver.find_element("id", element_id).get_attribute("data-value"))


def shown_cells(driver) -> dict[str, float]:
    cells = driver.find_elements("css selector", "#cells tbody tr")
    return {c.get_attribute("data-key"): float(c.find_element("css selector", "td.value").get_attribute("data-value"))
            for c in cells}  # fmt: skip


def test_the_page_equals_the_engine_click_by_click(browser, capsys):
    driver = browser
    assert len(driver.find_elements("css selector", "#sheet option")) == 11
    assert shown(driver, "epoch") == 0 and shown(driver, "a") == 1.0
    engine = Sheet("basic")

    click(driver, "run")  # Run: 5 epochs
    engine.run(5)
    assert (shown(driver, "a"), shown(driver, "b"), shown(driver, "epoch")) == (engine.a, engine.b, 5)
    chart = driver.execute_script("return document.getElementById('rmse-chart').data[0].y")
    assert chart == [h["rmse"] for h in engine.history]

    type_into(driver, "lr", "0.0002")  # the lr control acts between runs, as typing into the lr cell does
    engine.lr = 2e-4
    assert shown(driver, "lr-now") == 2e-4
    assert float(driver.find_element("css selector", "#rows tbody tr td[data-key=new_b]").get_attribute(
        "data-value")) == engine.rows[0]["new_b"]  # fmt: skip
    click(driver, "run")
    engine.run(5)
    assert (shown(driver, "a"), shown(driver, "b")) == (engine.a, engine.b)

    from selenium.webdriver.common.keys import Keys

    slider = driver.find_element("id", "lr-slider")  # the log-lr slider, one notch down, answers at once
    notch = float(slider.get_attribute("value")) - 0.01
    act(driver, lambda: slider.send_keys(Keys.LEFT))
    engine.lr = float(f"{10**notch:.3g}")
    assert shown(driver, "lr-now") == engine.lr and engine.lr < 2e-4
    click(driver, "run")
    engine.run(5)
    assert (shown(driver, "a"), shown(driver, "b")) == (engine.a, engine.b)

    for _ in range(3):  # Step: one row at a time
        click(driver, "step")
    cells = shown_cells(driver)
    assert cells == {k: engine.rows[3][k] for k in cells} and {"fd_db", "db", "new_a"} <= set(cells)
    highlighted = driver.find_element("css selector", "#rows tr.current td").text
    assert highlighted == "4"
    formula = driver.find_element("css selector", "#cells tr[data-key=new_b] td.formula").text
    assert formula == "b − lr·db"

    choose(driver, "sheet", "adam")  # another sheet starts from its own Reset
    adam = Sheet("adam").run(5)
    click(driver, "run")
    assert (shown(driver, "a"), shown(driver, "b")) == (adam.a, adam.b)
    assert driver.find_element("id", "beta2-box").is_displayed()
    choose(driver, "mode", "textbook")
    textbook = Sheet("adam", textbook=True).run(5)
    click(driver, "run")
    assert (shown(driver, "a"), shown(driver, "b")) == (textbook.a, textbook.b)
    choose(driver, "sheet", "basic")
    choose(driver, "mode", "workbook")
    assert shown(driver, "epoch") == 15 and shown(driver, "a") == engine.a  # the basic sheet kept its state

    click(driver, "reset")  # Reset: a = b = 1 and the sheet's own lr again, as the workbook's macro does
    assert (shown(driver, "epoch"), shown(driver, "a"), shown(driver, "b"), shown(driver, "lr-now")) == (0, 1, 1, 1e-4)
    assert shown_cells(driver) == {k: Sheet("basic").rows[0][k] for k in shown_cells(driver)}

    fill(driver, "race-epochs", "30")
    click(driver, "race")
    expected = {r["sheet"]: r for r in race(epochs=30)}
    for row in driver.find_elements("css selector", "#race-table tbody tr"):
        name = row.get_attribute("data-sheet")
        a = float(row.find_elements("css selector", "td")[2].get_attribute("data-value"))
        assert a == expected[name]["a"]
    assert len(driver.execute_script("return document.getElementById('race-rmse').data")) == 11

    choose(driver, "sheet", "adam_ann")  # the lesson's annealer, three Runs, then into the fourth epoch's rows
    for _ in range(3):
        click(driver, "run")
    for _ in range(6):
        click(driver, "step")
    annealed = Sheet("adam_ann").run(5).run(5).run(5)
    assert (shown(driver, "a"), shown(driver, "lr-now")) == (annealed.a, annealed.lr)
    assert shown_cells(driver)["sq_a"] == annealed.rows[6]["sq_a"]
    if os.environ.get("LRLAB_SCREENSHOT"):  # the README's picture: LRLAB_SCREENSHOT=1 pytest tests/test_lab_browser.py
        driver.save_screenshot(str(SCREENSHOT))
    timings = driver.execute_script("return window.labTimings")
    slowest: dict[str, float] = {}
    for t in timings:
        slowest[t["action"]] = max(slowest.get(t["action"], 0.0), t["ms"])
    with capsys.disabled():
        mean = sum(t["ms"] for t in timings) / len(timings)
        each = ", ".join(f"{action} {ms:.0f}" for action, ms in sorted(slowest.items()))
        print(f"\nbrowser lab, click to drawn page, 29 rows: {len(timings)} actions, mean {mean:.1f} ms;"
              f" slowest of each (ms): {each}")  # fmt: skip


def test_a_bad_csv_shows_the_error_and_keeps_the_state(browser, tmp_path):
    driver = browser
    choose(driver, "sheet", "momentum")
    click(driver, "run")
    before = (shown(driver, "a"), shown(driver, "b"), shown(driver, "epoch"))
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,5\n2,seven\n")
    act(driver, lambda: driver.find_element("id", "csv").send_keys(str(bad)))
    assert driver.find_element("id", "message").text == "bad.csv, line 3: non-numeric value in '2,seven'"
    assert (shown(driver, "a"), shown(driver, "b"), shown(driver, "epoch")) == before
    assert driver.find_element("id", "data-source").text.startswith("workbook")

    good = tmp_path / "mine.csv"
    good.write_text("x,y\n1,5\n2,7\n4,11\n8,19\n")
    act(driver, lambda: driver.find_element("id", "csv").send_keys(str(good)))
    assert driver.find_element("id", "message").text == ""
    assert driver.find_element("id", "data-source").text == "mine.csv (4 rows)"
    assert (shown(driver, "target-a"), shown(driver, "target-b")) == pytest.approx((2.0, 3.0))
    click(driver, "run")
    mine = Sheet("momentum", data=[(1, 5), (2, 7), (4, 11), (8, 19)]).run(5)
    assert (shown(driver, "a"), shown(driver, "b")) == (mine.a, mine.b)
    click(driver, "data-workbook")
