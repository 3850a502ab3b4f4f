"""axe-core (bundled by axe-playwright-python, injected by the test: no CDN) finds no critical or
serious violation on any page: the desk, its end screen, every admin page, the login page."""

from __future__ import annotations

import pytest

from tests.browser.test_desk_screen import log_in_as_admin
from tests.factories import decide, make_scored_image
from tests.helpers import make_user
from webapp.extensions import db
from webapp.jobs import submit
from webapp.models import Dataset, ModelVersion

pytestmark = pytest.mark.browser

SEVERE = {"critical", "serious"}


def severe_violations(page) -> list[str]:
    """The critical and serious axe-core violations of the page, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in SEVERE
    ]


@pytest.fixture
def instance(app, queue_of):
    """Something on every page: queue items, a decided and an escalated item, a job, a dataset."""
    queue_of(4)
    with app.app_context():
        app.config["REVIEWS_PER_ITEM"] = 1
        version = db.session.scalar(db.select(ModelVersion))
        ann, bob = make_user("ann"), make_user("bob")
        make_user("boss", role="admin")
        disputed = make_scored_image(version, 0.8, label="real")
        decide(ann, disputed.id, "fake", note="seam")
        decide(bob, disputed.id, "real")  # two reviewers disagree: an escalation
        job = submit("sleep", {"seconds": 0})
        dataset_id = db.session.scalar(db.select(Dataset.id))
        return {"job": job.id, "dataset": dataset_id, "version": version.name}


def test_the_login_page(server, new_page):
    page = new_page()
    page.goto(f"{server}/auth/login")
    assert severe_violations(page) == []


def test_the_desk_with_an_item_help_and_end_screen(app, server, new_page, instance):
    page = new_page()
    log_in_as_admin(page, server)
    page.wait_for_selector('#desk[data-ready]:not([data-ready=""])', state="attached")
    assert severe_violations(page) == []
    page.keyboard.press("?")
    assert severe_violations(page) == []
    page.keyboard.press("Escape")
    page.select_option("select[name=verdict]", "real")  # no item of that verdict is open
    page.wait_for_selector("#end:not([hidden]) .end-options li")
    assert severe_violations(page) == []


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/versions",
        "/admin/versions/{version}/changes",
        "/admin/jobs",
        "/admin/jobs/{job}",
        "/admin/tokens",
        "/admin/datasets/",
        "/admin/datasets/{dataset}",
        "/admin/datasets/stats",
        "/reports/",
        "/review/escalations",
        "/api/v1/docs",
    ],
)
def test_every_admin_page(app, server, new_page, instance, path):
    page = new_page()
    log_in_as_admin(page, server, open_desk=False)
    response = page.goto(server + path.format(**instance))
    assert response.status == 200
    assert severe_violations(page) == []
