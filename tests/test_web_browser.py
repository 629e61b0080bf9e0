"""The staff interface in a real browser: Debian's Chromium, headless, driven by Playwright, against
uvicorn on a free port (tests/web_site.py), email through a real SMTP server (aiosmtpd).
Screenshots of the main pages go to tests/artefacts/screenshots/. Skips without Chromium."""
from __future__ import annotations

import dataclasses
import io
import re
import shutil
from pathlib import Path

import pytest

from web_site import HINT, PASSWORD, make_site, serve

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parent / "artefacts" / "screenshots"

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-background-networking",
                                            "--disable-component-update"])
        yield launched
        launched.close()


@pytest.fixture
def site(tmp_path, smtp_server):
    # plain http on 127.0.0.1: Chromium keeps Secure cookies for localhost, but the test server is
    # reached by address; the cookie's Secure flag itself is checked in test_web_security.py
    return dataclasses.replace(make_site(tmp_path, smtp_server.url), secure_cookies=False)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_the_desk_flow_to_the_requests_report(browser, site, smtp_server):
    with serve(site) as base:
        page = browser.new_page(locale="fr-FR")
        page.goto(base)
        shot(page, "login")
        sign_in(page, base, "desk")
        page.fill("input[name=q]", "2000000001")
        page.press("input[name=q]", "Enter")
        page.wait_for_url(re.compile(r"/patrons/2000000001"))
        assert page.locator("h1").inner_text() == "Thomas Lefèvre"
        assert "7" in page.locator("td.late").first.inner_text()               # L1: 7 days overdue
        shot(page, "patron")
        page.click("#send-report")
        page.wait_for_url(re.compile(r"done=report"))
        assert "thomas.lefevre@etu.univ.example" in page.locator("[role=status]").inner_text()
        reports = [m for m in smtp_server.messages if "thomas.lefevre@etu.univ.example" in m.rcpt_tos
                   and "Rouge" in m.message.get_body(("plain",)).get_content()]
        assert len(reports) == 1
        text = reports[0].message.get_body(("plain",)).get_content()
        assert "Les Misérables" in text and "Madame Bovary" not in text and "Germinal" not in text
        page.goto(f"{base}/?q=a")
        shot(page, "search")


def test_an_owned_field_is_refused_with_the_hint(browser, site):
    with serve(site) as base:
        page = browser.new_page(locale="en-GB")
        sign_in(page, base, "desk")
        page.goto(f"{base}/patrons/2000000001")
        page.fill("#f-email", "thomas@elsewhere.example")
        page.fill("#f-preferred_language", "en")
        page.click("text=Save changes")
        error = page.locator("#error-email")
        assert HINT in error.inner_text()
        assert page.locator("#error-preferred_language").count() == 0
        shot(page, "edit-refused")
        page.goto(f"{base}/patrons/2000000001")
        assert page.input_value("#f-preferred_language") == "fr"              # all or nothing


def test_a_notice_resent_from_the_patrons_page(browser, site, smtp_server):
    with serve(site) as base:
        page = browser.new_page(locale="es-ES")
        sign_in(page, base, "desk")
        page.goto(f"{base}/patrons/2000000001")
        before = len(smtp_server.messages)
        row = page.locator("tr", has_text="first_reminder")
        row.locator("input[name=why]").fill("the patron asked on the phone")
        row.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"done=resent"))
        assert len(smtp_server.messages) == before + 1
        assert smtp_server.messages[-1].rcpt_tos == ["thomas.lefevre@etu.univ.example"]
        page.locator("tr", has_text="first_reminder").locator("a").first.click()
        page.wait_for_url(re.compile(r"/notice\?key="))
        assert "desk" in page.locator("body").inner_text()                    # the attempt and the action
        frame = page.frame_locator("iframe.mail")
        assert "Chimie organique" in frame.locator("body").inner_text()       # the HTML part, sandboxed
        shot(page, "notice")
        # headless Chromium paints a sandboxed (opaque-origin) frame blank in screenshots: the frame's
        # document is shot on its own (still served with Content-Security-Policy: sandbox)
        page.goto(base + page.locator("iframe.mail").get_attribute("src"))
        shot(page, "notice-email")


def test_the_letters_pdf_downloaded_and_opened(browser, site):
    from pypdf import PdfReader

    with serve(site) as base:
        page = browser.new_page(locale="fr-FR", accept_downloads=True)
        sign_in(page, base, "overdue")
        page.goto(f"{base}/day")
        shot(page, "day")
        with page.expect_download() as info:
            page.click("#letters-all")
        data = Path(info.value.path()).read_bytes()
        reader = PdfReader(io.BytesIO(data))
        assert len(reader.pages) >= 1
        assert "Moreau" in "".join(p.extract_text() for p in reader.pages)
        page.goto(f"{base}/day/dry-run?on=2026-11-30&loan=L2")
        shot(page, "dry-run")
