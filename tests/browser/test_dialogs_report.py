"""The evaluator's dialogs.html, opened from file:// in headless chromium: every picture loads, the filters change the
rows shown (checked against counts computed here from the predictions and the split, not from the page).

The report is the one `services.evaluate` wrote for the tiny project's bridge run; the screenshot goes to
outputs/test-browser/dialogs.png.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from shared.predictions import scores_to_ranks
from shared.visdial import load_visdial

pytestmark = pytest.mark.slow


def visible_rows(driver) -> int:
    return driver.execute_script("return [...document.querySelectorAll('tr.round')]"
                                 ".filter(r => r.offsetParent !== null).length")


def expected_rows(project) -> dict[str, list[tuple[int, int]]]:
    """(image_id, round_id) of every round by kind, and of the errors (right answer not ranked first) by kind."""
    split = load_visdial(project / "data/demo/val.json")
    rounds = {(d.image_id, r.round_id): r for d in split.dialogs for r in d.rounds}
    out: dict[str, list] = {"current": [], "memory": [], "current-errors": [], "memory-errors": []}
    for line in (project / "outputs/demo/predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = (row["image_id"], row["round_id"])
        rnd = rounds[key]
        out[rnd.kind].append(key)
        if scores_to_ranks(np.array(row["scores"]))[rnd.gt_index] > 1:
            out[f"{rnd.kind}-errors"].append(key)
    return out


def test_pictures_load_and_filters_work(project, browser, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    report = project / "outputs/demo/eval/dialogs.html"
    assert "dialogs.html" in (project / "outputs/demo/eval/report.md").read_text()  # report.md links it
    driver = browser
    driver.get(report.as_uri())

    # every picture: relative path, complete, decoded (naturalWidth 0 = broken)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    pictures = driver.execute_script("return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    split = load_visdial(project / "data/demo/val.json")
    assert len(pictures) == sum(len(d.image_ids()) for d in split.dialogs)
    assert all(not src.startswith(("/", "file:", "http")) for src, _ in pictures), pictures[:3]
    assert all(width > 0 for _, width in pictures), [p for p in pictures if p[1] == 0]

    want = expected_rows(project)
    assert want["memory"] and want["current"], "the tiny val split needs both kinds of questions"
    total = len(want["current"]) + len(want["memory"])
    assert visible_rows(driver) == total
    driver.find_element(By.CSS_SELECTOR, '.f-kind[value="current"]').click()  # memory questions only
    assert visible_rows(driver) == len(want["memory"])
    errors = Select(driver.find_element(By.ID, "f-errors"))
    errors.select_by_value("errors")
    assert visible_rows(driver) == len(want["memory-errors"])
    assert driver.find_element(By.ID, "shown").text == f"{len(want['memory-errors'])} rounds shown"
    driver.find_element(By.CSS_SELECTOR, '.f-kind[value="current"]').click()  # both kinds, errors only
    assert visible_rows(driver) == len(want["current-errors"]) + len(want["memory-errors"])
    errors.select_by_value("right")
    assert visible_rows(driver) == total - len(want["current-errors"]) - len(want["memory-errors"])
    errors.select_by_value("all")
    assert visible_rows(driver) == total

    shot = artifacts / "dialogs.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # the check can fail: a picture that is not there has naturalWidth 0
    driver.execute_script("document.images[0].src = 'no-such-picture.png'")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.images[0].complete"))
    assert driver.execute_script("return document.images[0].naturalWidth") == 0
    print(f"dialogs screenshot: {shot}; {len(pictures)} pictures, {total} rounds, "
          f"{len(want['current-errors']) + len(want['memory-errors'])} errors")
