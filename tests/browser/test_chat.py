"""`python -m services.train chat` in a real browser: a picture, two questions (the second about the first picture),
both answers shown, and the memory panel listing the first turn.

The server is the real verb over a real (4-step) demo bridge, started as a subprocess on a free loopback port and
stopped by its PID; the browser is headless Debian chromium. The screenshot goes to outputs/test-browser/chat.png.
"""
from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.tiny_project import project_env
from tests.demo_artifacts import ROOT, venv_python

pytestmark = pytest.mark.slow
FIRST, SECOND = "what color is the shape?", "what was the color of the shape in the first picture?"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"chat server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout} s; see {log}")


@pytest.fixture
def server(project, artifacts, tmp_path):
    port = free_port()
    log_path = artifacts / "chat-server.log"
    env = dict(project_env(), GRADIO_TEMP_DIR=str(tmp_path / "gradio"), PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([venv_python("train"), "-m", "services.train", "chat", "--config",
                                 str(ROOT / "configs/train/chat_demo.yaml"), f"port={port}", "gallery_size=4"],
                                cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_http(url, proc, log_path)
            yield url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(20)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def status(driver) -> str:
    return driver.execute_script("const e = document.querySelector('#status textarea, #status input');"
                                 "return e ? e.value : '';")


def bot_texts(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#chatbot [data-testid=\"bot\"]')]"
                                 ".map(e => e.innerText.trim())")


def summary(driver) -> str:
    """The panel's headline ('' while gradio re-renders the panel)."""
    return driver.execute_script("const e = document.querySelector('#mem-summary'); return e ? e.innerText : '';")


def panel_turns(driver) -> int:
    return len(css(driver, "#mem-turns tr.mem-turn"))


def wait(driver, condition, timeout: float, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), message)


def ask(driver, question: str) -> list[str]:
    """Send a question; wait until the status is ready again with one more turn in the panel. Returns the texts the
    last answer showed while it was streamed."""
    before = panel_turns(driver)
    box = css(driver, "#question textarea")[0]
    box.clear()
    box.send_keys(question)
    css(driver, "#send")[0].click()
    seen: list[str] = []
    end = time.monotonic() + 240
    while time.monotonic() < end:
        texts = bot_texts(driver)
        if texts and (not seen or seen[-1] != texts[-1]):
            seen.append(texts[-1])
        if status(driver) == "ready" and panel_turns(driver) == before + 1:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"no answer to {question!r}; status {status(driver)!r}")


def test_two_turns_about_two_pictures(server, browser, project, artifacts):
    driver = browser
    driver.get(server)
    wait(driver, lambda d: css(d, "#image-upload input[type=file]") and css(d, "#send"), 120, "the app did not render")

    # picture 1 through the upload box, the way a user adds their own picture
    upload = sorted((project / "data/demo/images").glob("*.png"))[-1]
    css(driver, "#image-upload input[type=file]")[0].send_keys(str(upload))
    wait(driver, lambda d: "1 pictures" in summary(d), 60, "the upload did not reach the server")
    first = ask(driver, FIRST)

    # picture 2 from the demo gallery, then a question about the first picture
    css(driver, "#demo-gallery button.thumbnail-item")[1].click()
    wait(driver, lambda d: "2 pictures" in summary(d), 60, "the gallery pick did not arrive")
    second = ask(driver, SECOND)

    answers = bot_texts(driver)
    assert len(answers) == 2 and all(answers), answers
    recorded = driver.execute_script("return [...document.querySelectorAll('#mem-turns tr.mem-turn')]"
                                     ".map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert [row[:3] for row in recorded] == [["1", "1", FIRST], ["2", "2", SECOND]], recorded
    assert [row[3] or "(empty answer)" for row in recorded] == answers  # the chat shows what the session recorded
    # the memory of turn 2: turn 1 is retrieved with its four scores, and the bank holds it
    reminder = css(driver, '#mem-reminders tr.mem-reminder[data-turn="1"]')
    assert reminder and FIRST in reminder[0].text
    assert len(reminder[0].find_elements("css selector", "td")) == 10  # turn .. score, 4 components, used
    slots = driver.execute_script("return [...document.querySelectorAll('#mem-slots tr.mem-slot')]"
                                  ".map(r => r.cells[2].innerText.trim())")
    assert slots == ["1"], slots  # one occupied slot, holding turn 1
    assert len(css(driver, "#mem-candidates tr.mem-candidate")) == 5
    assert "reminders: none" in css(driver, "#mem-gate")[0].text  # the demo bridge trains without reminders

    shot = artifacts / "chat.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"chat screenshot: {shot}; answers {answers}; streamed steps seen: {len(first)}, {len(second)}")
