"""A reviewer works the queue from the keyboard in a real browser; two reviewers never collide."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.helpers import PASSWORD, make_user
from webapp.extensions import db
from webapp.models import ReviewDecision, User

pytestmark = pytest.mark.browser


def log_in(page, base_url: str, app, username: str):
    with app.app_context():
        make_user(username)
    page.goto(f"{base_url}/auth/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector('#desk[data-state="item"]')


def current_item(page) -> int:
    return int(page.get_attribute("#desk", "data-image-id"))


def wait_ready(page) -> int:
    """Wait until the item on screen has been drawn for the desk's minimum display time."""
    page.wait_for_selector('#desk[data-ready]:not([data-ready=""])', state="attached")
    return current_item(page)


def press_and_wait(page, key: str) -> None:
    """Press a decision key once the item may be decided, and wait until another is on screen."""
    before = wait_ready(page)
    page.keyboard.press(key)
    # Selectors, not wait_for_function: the page's CSP forbids the eval that one needs.
    page.wait_for_selector(
        f'#desk[data-image-id]:not([data-image-id=""]):not([data-image-id="{before}"])',
        state="attached",
    )


def wait_saved(page) -> None:
    page.wait_for_selector('#desk[data-pending="0"][data-unsent="0"]', state="attached")


def decisions_of(app, username: str) -> list[tuple]:
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        rows = db.session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.user_id == user_id)
            .order_by(ReviewDecision.id)
        )
        return [(row.id, row.image_id, row.choice, row.note, row.reverts_id) for row in rows]


def test_reviewer_decides_five_items_by_keyboard_and_undoes_one(app, server, new_page, queue_of):
    order = queue_of(8)
    page = new_page()
    log_in(page, server, app, "rita")
    assert current_item(page) == order[0]

    shown = []
    for key in ["r", "f", "u", "r", "s"]:
        shown.append(current_item(page))
        if key == "u":  # this one with a note, typed after N; Enter gives the keys back
            page.keyboard.press("n")
            page.keyboard.type("halo around the hair")
            page.keyboard.press("Enter")
        press_and_wait(page, key)
    assert shown == order[:5]  # the desk walks the queue in its order

    page.keyboard.press("z")  # undo the skip: that item comes back on screen
    page.wait_for_selector(f'#desk[data-image-id="{shown[-1]}"]', state="attached")
    wait_saved(page)

    rows = decisions_of(app, "rita")
    assert [(image, choice, note) for _, image, choice, note, _ in rows] == [
        (order[0], "real", ""),
        (order[1], "fake", ""),
        (order[2], "unsure", "halo around the hair"),
        (order[3], "real", ""),
        (order[4], "skip", ""),
        (order[4], "undo", ""),
    ]
    assert rows[-1][4] == rows[-2][0]  # the undo reverts the skip
    assert page.inner_text("#stat-today") == "4"


def test_two_reviewers_at_once_never_share_an_item(app, server, new_page, queue_of):
    queue_of(14)
    ann, bob = new_page(), new_page()
    log_in(ann, server, app, "ann")
    log_in(bob, server, app, "bob")
    for _round in range(4):
        for page, key in ((ann, "r"), (bob, "f")):
            held_by_ann = set(ann.get_attribute("#desk", "data-held").split(","))
            held_by_bob = set(bob.get_attribute("#desk", "data-held").split(","))
            assert not held_by_ann & held_by_bob - {""}
            press_and_wait(page, key)
    wait_saved(ann)
    wait_saved(bob)
    served_ann = set(ann.evaluate("window.reviewDesk.served"))
    served_bob = set(bob.evaluate("window.reviewDesk.served"))
    assert served_ann and served_bob
    assert not served_ann & served_bob
    decided_ann = {row[1] for row in decisions_of(app, "ann")}
    decided_bob = {row[1] for row in decisions_of(app, "bob")}
    assert len(decided_ann) == len(decided_bob) == 4
    assert decided_ann <= served_ann and decided_bob <= served_bob


def test_help_zoom_and_heatmap_message(app, server, new_page, queue_of):
    queue_of(2)  # the version has no checkpoint: the heatmap cannot be computed
    page = new_page()
    log_in(page, server, app, "rita")
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")
    fitted = page.inner_text("#zoom-level")
    page.keyboard.press("+")
    assert page.inner_text("#zoom-level") != fitted
    page.keyboard.press("h")
    page.wait_for_selector("#toast:not([hidden])")
    assert "has no checkpoint" in page.inner_text("#toast")
    # A small image is blown up to fit the screen, with crisp pixels rather than a blur.
    assert page.evaluate("document.getElementById('stage').classList.contains('pixelated')")
