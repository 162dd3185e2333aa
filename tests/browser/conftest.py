"""Headless Debian chromium driven by selenium, kept off the network; the tiny demo project both tests read.

Needs Debian's `chromium` + `chromium-driver` (`.ci/run` installs them). Without them the tests are skipped on a
developer machine and fail under CI (CI=true), so a missing install can never pass silently. Selenium is pointed at
the real binary and at chromedriver by path, so Selenium Manager (which may download drivers) never runs; every
flag below keeps chromium from calling out, and the host-resolver rule makes any name but localhost unresolvable.
Screenshots and logs go to outputs/test-browser/ (VDMEM_TEST_OUT overrides it).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import tiny_project
from tests.demo_artifacts import ROOT

CHROMIUM = Path("/usr/lib/chromium/chromium")  # the binary itself; /usr/bin/chromium is a wrapper adding flags
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "run .ci/run, or: apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox",  # root in a container: the setuid/namespace sandbox cannot start
    "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1300",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-client-side-phishing-detection", "--disable-domain-reliability",
    "--disable-breakpad", "--metrics-recording-only", "--no-first-run", "--no-default-browser-check", "--no-pings",
    "--password-store=basic", "--use-mock-keychain",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,DialMediaRouteProvider",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]


def _need_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"chromium is not installed (missing {', '.join(missing)}): {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = Path(os.environ.get("VDMEM_TEST_OUT", ROOT / "outputs" / "test-browser"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """data, shards, a 4-step demo bridge (outputs/demo), its val predictions and their evaluation."""
    _need_chromium()  # no point building for minutes when the browser is missing
    return tiny_project.build(tmp_path_factory.mktemp("project"))


@pytest.fixture
def browser(tmp_path):
    _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.update(SE_OFFLINE="true", SE_AVOID_STATS="true")  # Selenium Manager: never download, no stats
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium; then make sure chromedriver (by its PID) is gone too
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
