"""The page in a real headless browser (Debian's chromium + chromedriver, driven by selenium):
pair with the code from `medkiosk serve pair`, choose a module, upload a real X-ray, read the top-3
with the screen's wording, save the case. Skipped where chromium, its driver or selenium is absent.
"""

import json
import os
import shutil

import pytest

from tests.edge.serve.serve_helpers import (
    MODELS,
    PEDIATRIC,
    medkiosk,
    pairing_code,
    real_xray,
    server_fixture,
)

pytest.importorskip("flask", reason="pip install 'medkiosk[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="apt-get install chromium chromium-driver"),
    pytest.mark.skipif(not os.path.isdir(PEDIATRIC), reason="../shared/data is not beside the checkout"),
]


server = server_fixture("page")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=390,844"):  # a phone's screen
        options.add_argument(flag)
    options.accept_insecure_certs = True  # the unit's self-signed certificate (checked by fingerprint)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_pair_upload_read_top3_and_save(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    find = browser.find_element
    browser.get("https://{}:{}/".format(server.host, server.port))
    wait_for(browser, lambda d: d.find_element(By.ID, "pair-view").is_displayed())
    find(By.ID, "pair-code").send_keys("000000" if pairing_code(server.config) != "000000" else "111111")
    find(By.ID, "pair-button").click()
    wait_for(browser, lambda d: "wrong pairing code" in d.find_element(By.ID, "status").text)
    find(By.ID, "pair-code").clear()
    find(By.ID, "pair-code").send_keys(pairing_code(server.config))
    find(By.ID, "pair-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "classify-view").is_displayed())
    wait_for(browser, lambda d: len(Select(d.find_element(By.ID, "module")).options) == 3)
    Select(find(By.ID, "module")).select_by_value("pediatric-pneumonia")

    image = real_xray("PNEUMONIA", 5)
    find(By.ID, "image").send_keys(image)
    find(By.ID, "classify-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
    rows = [item.text.split("\n") for item in browser.find_elements(By.CSS_SELECTOR, "#result-rows li")]
    cli = medkiosk("classify", image, "--bundle", os.path.join(MODELS, "pediatric-pneumonia"), "--json")
    expected = json.loads(cli.stdout)["images"][0]["top3"]
    assert [row[0] for row in rows] == [item["name"] for item in expected]
    assert rows[0][1].endswith("%")
    assert find(By.ID, "result-disclaimer").text == "Decision support only - not a diagnosis"
    assert find(By.ID, "result-title").text.startswith("Chest X-ray (child)")

    before = server.cases_on_disk()
    find(By.ID, "save-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("Case saved ("))
    assert len(server.cases_on_disk()) == len(before) + 1
    link = find(By.ID, "referral-link")
    wait_for(browser, lambda d: link.is_displayed())
    fetched = browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(function (r) { return r.arrayBuffer().then(function (b) {"
        "  done([r.status, r.headers.get('Content-Type'), new TextDecoder('latin1').decode(b.slice(0, 5))]);"
        "}); });", link.get_attribute("href"))
    assert fetched == [200, "application/pdf", "%PDF-"]
    # The token stays out of the page's reach: the cookie is HttpOnly.
    assert browser.execute_script("return document.cookie") == ""
