"""The member and operator pages in a real browser (issue 12 item 7): Debian's Chromium through chromium-driver.

A real `cairn node serve` (uvicorn, loopback, a free port, stopped by its pid) over a fresh node
directory; Selenium drives headless Chromium through a member's journey (follow an invitation link,
join, contribute a chat with a rating, see it pending with its countdown, delete it, contribute
again, object to a proposed policy change, withdraw after confirming) and through the operator page
(sign in, the budget chart drawn as inline SVG from the signed ledger, invitations). No Selenium
Manager download: the driver is /usr/bin/chromedriver given to a Service, and SE_OFFLINE is set.
`make test` installs chromium and chromium-driver when missing (Makefile `browser`); without them
these tests skip, saying so. With CAIRN_SCREENSHOTS=DIR every step is saved as DIR/<step>.png
(desktop) and DIR/<step>-phone.png (a 390-px-wide phone), the pictures in the README.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node.service.conftest import OPERATOR, ROOT, Server, make_node

SHOTS = os.environ.get("CAIRN_SCREENSHOTS")
CANARY = "okapi-canary-5521-heron"
CHAT = (f"User: I'm planning a garden in a shady yard ({CANARY}). Which vegetables still grow well?\n"
        "Assistant: Leafy greens (lettuce, spinach, kale, chard) and herbs such as mint and parsley "
        "manage with three to four hours of sun. Fruiting plants like tomatoes need more.")


def _find(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n) or (f"/usr/bin/{n}" if Path(f"/usr/bin/{n}").exists() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver = _find("chromium", "chromium-browser"), _find("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make browser, or "
                    "apt-get install -y chromium chromium-driver): the browser tests need both")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900",
              "--no-first-run", "--disable-extensions", "--disable-background-networking", "--lang=en-US"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
        if offline is None:
            os.environ.pop("SE_OFFLINE", None)


def _small_png(data: bytes) -> bytes:
    """The screenshot in 256 colours (a third of the bytes, for the README), when Pillow is there."""
    try:
        from PIL import Image
    except ImportError:
        return data
    import io

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256).save(buf, format="PNG", optimize=True)
    return buf.getvalue()



def _gone(element):
    """Like Selenium's staleness_of, but Chromium's "node does not belong to the document" (the old page
    already replaced while asking) also counts as gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def gone(_driver) -> bool:
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            return "does not belong to the document" in str(e)

    return gone

class Browser:
    """The driver, a base URL and the screenshots of each step."""

    def __init__(self, driver, url: str):
        self.d, self.url = driver, url
        self.d.delete_all_cookies()

    def get(self, path: str) -> None:
        self.d.get(self.url + path)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def click(self, selector: str, navigates: bool = True) -> None:
        self.press(self.css(selector), navigates)

    def key(self, selector: str, key: str, navigates: bool = True) -> None:
        """Type `key` into the element (the keyboard instead of the mouse)."""
        self.press(self.css(selector), navigates, key)

    def press(self, element, navigates: bool = True, key: str | None = None) -> None:
        """Click (or type `key`); when that loads a new page, wait until it has (the old page goes stale)."""
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.css("html")
        element.send_keys(key) if key is not None else element.click()
        if navigates:
            WebDriverWait(self.d, 15).until(_gone(old))
            WebDriverWait(self.d, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def notices(self) -> list[str]:
        return [n.text for n in self.all(".notice")]

    def shot(self, name: str) -> None:
        """Save the page as DIR/name.png (desktop, the whole page) and DIR/name-phone.png (390 px wide)."""
        if not SHOTS:
            return
        out = Path(SHOTS)
        out.mkdir(parents=True, exist_ok=True)
        for suffix, width, scale, mobile in (("", 1100, 1, False), ("-phone", 390, 1, True)):
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": 800, "deviceScaleFactor": scale, "mobile": mobile})
            height = self.d.execute_script("return Math.max(document.body.scrollHeight, 400)")
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": min(int(height), 4000), "deviceScaleFactor": scale,
                                    "mobile": mobile})
            (out / f"{name}{suffix}.png").write_bytes(_small_png(self.d.get_screenshot_as_png()))
        self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def assert_accessible(self) -> None:
        """Every visible form control has a label, the page has main and a language, and a phone viewport."""
        unlabelled = self.d.execute_script("""
            return [...document.querySelectorAll('input, select, textarea')]
              .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map(e => e.name || e.id);""")
        assert unlabelled == [], f"form controls without a label: {unlabelled}"
        assert self.all("main") and self.css("html").get_attribute("lang") == "en"
        assert "width=device-width" in self.css('meta[name="viewport"]').get_attribute("content")


@pytest.fixture
def served(tmp_path):
    nd = make_node(tmp_path / "node")
    server = Server(nd)
    try:
        yield nd, server
    finally:
        server.stop()


def _invite(nd) -> str:
    import json

    out = subprocess.run([sys.executable, "-m", "cairn.cli", "node", "invite", str(nd.path), "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["invites"][0]["url"]


def _contribute(b: Browser, chat: str, rating: str | None = None, thumbs: str | None = None) -> None:
    from selenium.webdriver.support.ui import Select

    b.css("#chat").send_keys(chat)
    if rating:
        Select(b.css("#rating")).select_by_value(rating)
    if thumbs:
        b.click(f"#thumbs-{thumbs}", navigates=False)
    Select(b.css("#licence")).select_by_value("CC-BY-4.0")
    b.click("#contribute")


def test_member_journey_in_chromium(served, driver):
    nd, server = served
    from node.service import governance

    text = nd.policy_path.read_text().replace("waiting_period_hours = 24.0", "waiting_period_hours = 12.0")
    governance.propose(nd.path, text)  # a change members can object to during its notice period
    url = _invite(nd)
    b = Browser(driver, server.url)

    # follow the invitation link: the code is filled in; join
    b.d.get(url.replace("http://127.0.0.1:8750", server.url))
    assert url.endswith("?invite=" + b.css("#invite").get_attribute("value"))
    b.assert_accessible()
    b.shot("member-1-join")
    b.click("form[action='/member/redeem'] button")
    assert b.all("#new-token"), b.css("main").text
    token = b.css("#new-token").get_attribute("value")
    member_id = b.css(".card .mono").text
    assert len(token) > 20 and member_id.startswith("m-")
    b.shot("member-2-token")
    b.click("#continue")

    # contribute a chat with a rating: it is pending, with a countdown to eligibility
    assert b.all("#no-contributions")
    b.assert_accessible()
    _contribute(b, CHAT, rating="4")
    assert any("pending" in n for n in b.notices()), b.notices()
    rows = b.all("#contributions tbody tr")
    assert len(rows) == 1 and "pending" in rows[0].text and re.search(r"eligible in 23 h \d+ min", rows[0].text)
    b.shot("member-3-pending")

    # delete it: gone from the page and from the store
    b.press(rows[0].find_element("css selector", "form[action$='/delete'] button"))
    assert any("Deleted" in n for n in b.notices()) and b.all("#no-contributions")
    assert not b.all("#contributions tbody tr")

    # contribute again (thumbs up), add a dissent note, object to the proposed policy change
    _contribute(b, CHAT.replace("shady", "sunny"), thumbs="up")
    assert any("pending" in n for n in b.notices()), b.notices()
    (row,) = b.all("#contributions tbody tr")
    b.press(row.find_element("css selector", "details summary"), navigates=False)
    row.find_element("css selector", "input[name='note']").send_keys("I rated this, but my question was vague")
    b.press(row.find_element("css selector", "form[action$='/dissent'] button"))
    assert any("dissent" in n for n in b.notices()), b.notices()
    b.css("input[name='reason']").send_keys("Twelve hours is too short to change my mind")
    b.click("form[action$='/object'] button")
    assert any("objection" in n for n in b.notices()), b.notices()
    assert "You objected" in b.css("#gov-h").find_element("xpath", "..").text
    assert len(b.all("#contributions tbody tr")) == 1
    b.shot("member-4-contributed")

    # withdraw, after confirming: signed out, token revoked, nothing of theirs left in the store
    b.click("#withdraw")
    b.assert_accessible()
    b.shot("member-5-confirm")
    b.click("#withdraw-confirm", navigates=False)  # the unticked box blocks the form: the browser asks for it
    assert "/member/withdraw" in b.d.current_url and not b.all(".notice")
    b.key("#confirm", " ", navigates=False)  # by keyboard: Space ticks the box, Enter on the button submits
    b.key("#withdraw-confirm", "\n")
    assert "everything you contributed is deleted" in b.css("main").text
    b.shot("member-6-withdrawn")
    b.get("/member")
    assert b.all("#invite") and not b.all("#contributions")

    from node.service import members

    assert members.authenticate(nd.path, token) is None
    with nd.open_store() as store:
        texts = [m.text for r in store.records() for m in r.prompt]
        assert not any(CANARY in t for t in texts)
        assert store.conn.execute("SELECT COUNT(*) FROM contributions").fetchone()[0] == 0


def _ledger(nd, n: int = 5) -> None:
    """A few signed releases in the node's ledger, so that the chart has something to draw."""
    from node.releases import open_ledger
    from privacy.events import DiscreteGaussianEvent

    policy = nd.policy()
    with nd.open_store() as store:
        ledger = open_ledger(nd, store)
        for i in range(n):
            ledger.append("coverage" if i % 2 else "thumbs_rates", DiscreteGaussianEvent(12.0 - i, 1), policy.delta,
                          policy.sha256(), round_id=f"fed/{i // 2}", request_hash=f"q{i}")


def _community(nd) -> None:
    """Two members, one contribution, a proposed policy change and one objection to it."""
    from node.service import governance, members

    text = nd.policy_path.read_text().replace("epsilon_cap = 8.0", "epsilon_cap = 6.0")
    pid = governance.propose(nd.path, text)["id"]
    (a, _), _b = (members.redeem(nd.path, code) for code in members.create_invites(nd.path, 2))
    members.contribute(nd.path, a, {"messages": [{"role": "user", "content": "Is a haiku 17 syllables?"},
                                                 {"role": "assistant", "content": "Traditionally, yes: 5, 7, 5."}],
                                    "rating": 5, "licence": "CC0-1.0"})
    governance.object_to(nd.path, a, pid, "A lower cap slows the model down for everyone")


def test_operator_page_draws_the_budget_chart(served, driver):
    nd, server = served
    _ledger(nd, 5)
    _community(nd)
    b = Browser(driver, server.url)
    b.get("/operator")
    assert not b.all("svg.chart")  # behind the operator token
    b.css("#operator-token").send_keys("not-the-token")
    b.click("form[action='/operator/signin'] button")
    assert any("wrong operator token" in n for n in b.notices()) and not b.all("svg.chart")
    b.css("#operator-token").send_keys(OPERATOR)
    b.click("form[action='/operator/signin'] button")

    svg = b.css("#budget-chart svg.chart")
    assert svg.get_attribute("role") == "img" and "Privacy budget" in b.css("#chart-title").get_attribute("textContent")
    assert len(b.all("svg.chart circle.point")) == 5 and b.all("svg.chart polyline.spent") and b.all("svg.chart line.cap")
    assert svg.size["width"] > 300 and svg.size["height"] > 100  # drawn, not an empty box
    assert len(b.all("#ledger tbody tr")) == 5
    status = b.css("#status").text
    assert "Members\n2" in status and "1 (1 pending)" in status, status
    (proposal,) = b.all("#proposals tbody tr")  # objections counted, never who
    assert "pending" in proposal.text and "epsilon_cap" in proposal.text and proposal.text.endswith("1")
    b.assert_accessible()

    b.css("#count").clear()
    b.css("#count").send_keys("2")
    b.click("#create-invites")
    codes = [c.text for c in b.all("#invites .invite-code")]
    assert len(codes) == 2 and all(codes)
    assert b.all("svg.chart")
    b.shot("operator-1-page")
