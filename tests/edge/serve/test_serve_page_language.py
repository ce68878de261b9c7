"""The page in the kiosk's language ([kiosk] language = hi), in a real headless chromium: the page's
own texts, the module names, the top-3 names, the banner wording and the decision-support notice
come in Hindi, rendered by the service (no script fetches them, no CDN). Skipped like
test_serve_page.py where chromium, its driver or selenium is absent.
"""

import json
import os

import pytest

from edge.i18n import set_language
from tests.edge.po_files import messages
from tests.edge.serve.serve_helpers import MODELS, PEDIATRIC, Server, medkiosk, pairing_code, real_xray
from tests.edge.serve.test_serve_page import CHROMEDRIVER, CHROMIUM, browser, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="apt-get install chromium chromium-driver"),
    pytest.mark.skipif(not os.path.isdir(PEDIATRIC), reason="../shared/data is not beside the checkout"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HINDI = messages(os.path.join(ROOT, "edge", "locale", "hi", "LC_MESSAGES", "medkiosk.po"))


def hindi(text):
    return HINDI[text].msgstr[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("page-hi"))
    with open(running.config) as handle:
        config = handle.read()
    with open(running.config, "w") as handle:
        handle.write(config.replace("[kiosk]\n", "[kiosk]\nlanguage = hi\n", 1))
    running.start()
    yield running
    running.stop()
    set_language("en")


def test_the_page_is_served_in_hindi(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    find = browser.find_element
    browser.get("https://{}:{}/".format(server.host, server.port))
    wait_for(browser, lambda d: d.find_element(By.ID, "pair-view").is_displayed())
    assert find(By.TAG_NAME, "html").get_attribute("lang") == "hi"
    assert find(By.CSS_SELECTOR, "#pair-view h2").text == hindi("Pair this device")
    assert find(By.ID, "pair-button").text == hindi("Pair")
    assert find(By.ID, "top-notice").text == hindi("Decision support only - not a diagnosis")
    assert "{{" not in browser.page_source

    find(By.ID, "pair-code").send_keys(pairing_code(server.config))
    find(By.ID, "pair-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "classify-view").is_displayed())
    wait_for(browser, lambda d: len(Select(d.find_element(By.ID, "module")).options) == 3)
    options = [option.text for option in Select(find(By.ID, "module")).options]
    assert options == [hindi("Suggest a module"), hindi("Chest X-ray (adult)"),
                       hindi("Chest X-ray (child): pneumonia")]
    Select(find(By.ID, "module")).select_by_value("pediatric-pneumonia")

    image = real_xray("PNEUMONIA", 5)
    find(By.ID, "image").send_keys(image)
    find(By.ID, "classify-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
    rows = [item.text.split("\n") for item in browser.find_elements(By.CSS_SELECTOR, "#result-rows li")]
    cli = medkiosk("classify", image, "--bundle", os.path.join(MODELS, "pediatric-pneumonia"), "--json")
    expected = json.loads(cli.stdout)["images"][0]["top3"]
    assert [row[0] for row in rows] == [hindi(item["name"]) for item in expected]
    assert find(By.ID, "result-disclaimer").text == hindi("Decision support only - not a diagnosis")
    assert find(By.ID, "result-title").text == hindi("Chest X-ray (child): pneumonia")

    find(By.ID, "save-button").click()
    saved = hindi("Case saved ({})").split("(")[0]
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith(saved))
