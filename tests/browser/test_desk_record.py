"""The desk records only what a reviewer saw: double clicks, fast keys, Space after a click, a
reload with decisions still unsaved, and the stamp of each decision on its own image."""

from __future__ import annotations

import json

import pytest

from tests.browser.test_review_desk import (
    current_item,
    decisions_of,
    log_in,
    press_and_wait,
    wait_ready,
    wait_saved,
)

pytestmark = pytest.mark.browser

DECISIONS = "**/api/v1/review/decisions"


def standing(app, username: str) -> list[tuple[int, str]]:
    """(image id, choice) of the user's decisions, in order."""
    return [(image, choice) for _, image, choice, _, _ in decisions_of(app, username)]


def test_a_double_click_records_one_decision(app, server, new_page, queue_of):
    order = queue_of(4)
    page = new_page()
    log_in(page, server, app, "rita")
    wait_ready(page)
    page.dblclick("button[data-choice=real]")
    page.wait_for_selector(f'#desk[data-image-id="{order[1]}"]', state="attached")
    wait_ready(page)  # the second item is drawn, and was not decided by the second click
    wait_saved(page)
    assert standing(app, "rita") == [(order[0], "real")]
    assert page.evaluate("document.activeElement.tagName") != "BUTTON"


def test_fast_repeated_keys_decide_only_items_that_were_drawn(app, server, new_page, queue_of):
    order = queue_of(12)
    page = new_page()
    log_in(page, server, app, "rita")
    wait_ready(page)
    for _ in range(8):
        page.keyboard.press("s", delay=0)
        page.wait_for_timeout(35)
    wait_saved(page)
    desk = page.evaluate("({drawn: window.reviewDesk.drawn, accepted: window.reviewDesk.accepted})")
    decided = [image for image, _ in standing(app, "rita")]
    assert decided and decided == [entry["image_id"] for entry in desk["accepted"]]
    # In queue order, none passed over, and each one had been drawn when it was decided.
    assert decided == order[: len(decided)]
    assert set(decided) <= set(desk["drawn"])
    assert all(entry["shownFor"] >= 150 for entry in desk["accepted"])
    assert current_item(page) == order[len(decided)]  # the next one is on screen, undecided


def test_space_and_enter_after_a_click_do_not_decide(app, server, new_page, queue_of):
    order = queue_of(4)
    page = new_page()
    log_in(page, server, app, "rita")
    wait_ready(page)
    page.click("button[data-choice=real]")
    page.wait_for_selector(f'#desk[data-image-id="{order[1]}"]', state="attached")
    wait_ready(page)
    page.keyboard.press(" ")
    page.keyboard.press("Enter")
    page.focus("button[data-choice=fake]")  # even a keyboard user's focused button
    page.keyboard.press(" ")
    page.keyboard.press("Enter")
    press_and_wait(page, "u")  # a real key decides the second item
    wait_saved(page)
    assert standing(app, "rita") == [(order[0], "real"), (order[1], "unsure")]


def test_decisions_unsaved_at_a_reload_are_sent_after_it_once(app, server, new_page, queue_of):
    order = queue_of(6)
    page = new_page()
    log_in(page, server, app, "rita")
    blocked = {"on": True, "seen": 0}

    def flaky_network(route):
        if not blocked["on"]:
            route.continue_()
            return
        blocked["seen"] += 1
        if blocked["seen"] == 1:
            route.fetch()  # the server stores the first decision; its answer is lost
        route.abort("connectionreset")

    page.route(DECISIONS, flaky_network)
    press_and_wait(page, "r")
    press_and_wait(page, "f")
    unsent = json.loads(page.evaluate("localStorage.getItem(Object.keys(localStorage)[0])"))
    assert [(entry["image_id"], entry["choice"]) for entry in unsent] == [
        (order[0], "real"),
        (order[1], "fake"),
    ]
    assert standing(app, "rita") == [(order[0], "real")]  # saved, but the page does not know
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
    page.reload()
    assert dialogs == ["beforeunload"]  # leaving was questioned
    page.wait_for_selector('#desk[data-state="item"]')
    blocked["on"] = False  # the network is back: the page sends them again, with their keys
    wait_saved(page)
    assert standing(app, "rita") == [(order[0], "real"), (order[1], "fake")]
    served = page.evaluate("window.reviewDesk.served")
    assert order[0] not in served and order[1] not in served
    assert page.evaluate("Object.keys(localStorage).length") == 0


def test_the_stamp_stays_with_the_image_it_was_made_on(app, server, new_page, queue_of):
    order = queue_of(3)
    page = new_page()
    log_in(page, server, app, "rita")
    press_and_wait(page, "r")
    recent = page.locator("#recent li").first
    assert recent.get_attribute("data-image-id") == str(order[0])
    assert "REAL" in recent.inner_text()
    assert "img_" in recent.inner_text()  # named by its file, with its thumbnail
    assert recent.locator("img").get_attribute("src").endswith(f"/{order[0]}/thumbnail")
    # Nothing over the next image reads as its label.
    assert current_item(page) == order[1]
    viewer_text = page.inner_text("#viewer")
    assert "REAL" not in viewer_text and "SKIPPED" not in viewer_text
    press_and_wait(page, "s")
    assert page.locator("#recent li").first.get_attribute("data-image-id") == str(order[1])
    wait_saved(page)
    assert page.locator("#recent li").first.get_attribute("data-status") == "saved"
