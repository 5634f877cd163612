"""The merchant's page in real headless Chromium, against the embedded default (one process:
SQLite, in-process workers, in-memory channel layer, tiny engine).

Screenshots land in ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.site import ROOT, site_create, site_destroy
from tests.images import product_photo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "a long test password 1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/browser-up)"
    ),
]


@pytest.fixture
def embedded_site(tmp_path):
    site = site_create(tmp_path, extra_env={"REDIS_URL": "", "BROKER_URL": "", "DATABASE_URL": ""})
    site.env["DATABASE_URL"] = f"sqlite:///{site.data_dir / 'site.sqlite3'}"
    site.manage("migrate", "--no-input", "-v", "0")
    site.manage("createmerchant", "Browser Shop", "--email", "owner@browser.test", "--password", PASSWORD)
    site.start_web()
    yield site
    site_destroy(site)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        yield context.new_page()
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_merchant_logs_in_uploads_watches_five_mockups_arrive_and_downloads_them(
    embedded_site, page, tmp_path
):
    photo = tmp_path / "mug.png"
    product_photo("bottle", width=400, height=400).image.save(photo)

    page.goto(embedded_site.base_url + "/")
    assert "/login/" in page.url
    page.fill("input[name=username]", "owner@browser.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#dropzone")
    assert page.is_visible("#demo-banner"), "the page says backgrounds come from a demo model"
    shot(page, "01-studio")

    page.set_input_files("#photo", str(photo))
    page.fill("#product-name", "ceramic mug")
    for slug in ["marble-kitchen", "forest-moss", "concrete-loft", "sunlit-beach", "marketplace-white"]:
        page.check(f"input[name=styles][value={slug}]")
    page.click("#start")

    page.wait_for_selector("#job-card:not([hidden])")
    page.wait_for_selector(".variation progress", state="attached")
    # Progress bars move step by step before the images arrive.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.variation progress')).some(p => p.value > 0)", timeout=180_000
    )
    shot(page, "02-progress")
    page.wait_for_function(
        "document.querySelectorAll('.variation img:not([hidden])').length === 5", timeout=240_000
    )
    page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)
    assert page.inner_text("#confidence").endswith("%")
    assert page.locator(".fidelity", has_text="pixel-exact").count() == 5
    shot(page, "03-done")

    with page.expect_download() as download_info:
        page.click("#download-all")
    archive = zipfile.ZipFile(download_info.value.path())
    names = archive.namelist()
    assert len(names) == 5
    for name in names:
        Image.open(io.BytesIO(archive.read(name))).verify()

    page.goto(embedded_site.base_url + "/history/")
    assert page.locator(".status-succeeded").count() == 1
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(page.url)
    shot(page, "04-history-phone")


def test_the_page_refuses_a_file_that_is_not_a_photo_before_uploading(embedded_site, page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.goto(embedded_site.base_url + "/login/")
    page.fill("input[name=username]", "owner@browser.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#dropzone")
    page.set_input_files("#photo", str(text))
    page.wait_for_selector("#form-error:not([hidden])")
    assert "JPEG, PNG or WebP" in page.inner_text("#form-error")
