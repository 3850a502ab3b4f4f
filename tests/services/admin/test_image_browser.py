"""The image browser's service: filters, keyset pages that neither repeat nor skip, the full
record, sending images to review (the queue's ``requested`` bucket) and to a new dataset."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.services.admin import image_browser
from webapp.services.admin.image_browser import BrowseFilter
from webapp.services.review import queue


@pytest.fixture
def grid(app_ctx):
    """Twelve images over two datasets, scored by v1 (active) and v2."""
    first, second = make_dataset("first"), make_dataset("second")
    v1, v2 = make_version("v1", active=True), make_version("v2", active=False)
    images = []
    for seed in range(12):
        dataset = first if seed < 8 else second
        image = make_seeded_image(dataset, "real" if seed % 2 else "fake", "test", seed=seed)
        make_prediction(image, v1, (seed + 0.5) / 12, ood_score=seed / 10, audit_key=0.0)
        make_prediction(image, v2, 0.5, ood_score=None, audit_key=0.0)
        images.append(image)
    make_decision(images[0], "ann", "real", v1)
    return images


def ids(rows):
    return [image.id for image, _ in rows]


def all_pages(chosen: BrowseFilter, size: int) -> list[int]:
    seen, after = [], ""
    while True:
        rows, after = image_browser.page(chosen, after=after, size=size)
        seen += ids(rows)
        if not after:
            return seen


@pytest.mark.parametrize("sort", list(image_browser.SORTS))
def test_keyset_pages_cover_everything_once_in_order(grid, sort):
    seen = all_pages(BrowseFilter(sort=sort), size=5)
    assert sorted(seen) == sorted(image.id for image in grid)
    if sort == "-p_fake":
        assert seen == [image.id for image in reversed(grid)]


def test_filters_narrow_the_grid(grid):
    by = lambda **kw: set(ids(image_browser.page(BrowseFilter(**kw))[0]))  # noqa: E731
    assert by(dataset="second") == {image.id for image in grid[8:]}
    assert by(label="real", dataset="first") == {grid[i].id for i in (1, 3, 5, 7)}
    assert by(verdict="fake") == {image.id for image in grid[6:]}
    assert by(p_min=0.2, p_max=0.4) == {grid[i].id for i in (2, 3, 4)}
    assert by(ood_min=1.05) == {grid[11].id}
    assert by(reviewed="yes") == {grid[0].id}
    assert len(by(reviewed="no")) == 11
    assert by(format="png") == {image.id for image in grid}


def test_filters_from_a_query_string_ignore_what_does_not_parse():
    chosen = BrowseFilter.from_args(
        MultiDict({"p_min": "lots", "sort": "drop table", "label": "real"})
    )
    assert (chosen.p_min, chosen.sort, chosen.label) == (None, "id", "real")


def test_the_record_holds_every_versions_prediction_and_the_decisions(grid):
    record = image_browser.image_record(grid[0])
    assert [name for name, _, _ in record["predictions"]] == ["v1", "v2"]
    assert [(d.choice, name, undone) for d, name, undone in record["decisions"]] == [
        ("real", "ann", False)
    ]
    assert [name for _, name, _, _ in record["memberships"]] == ["first"]


def test_sent_images_lead_the_review_queue(grid):
    chosen = [grid[5].id, grid[9].id]
    assert image_browser.send_to_review(chosen, user=None) == (2, 0)
    assert image_browser.send_to_review(chosen, user=None) == (0, 2)
    items = queue.list_items(limit=5)
    assert [item.bucket for item in items[:2]] == ["requested", "requested"]
    assert {item.image_id for item in items[:2]} == set(chosen)
    assert queue.counts()["requested"] == 2


def test_a_selection_becomes_an_evaluation_only_dataset(grid):
    dataset = image_browser.new_evaluation_dataset("held out", [grid[1].id, grid[2].id], None)
    assert dataset.evaluation_only
    assert set(ids(image_browser.page(BrowseFilter(dataset="held out"))[0])) == {
        grid[1].id,
        grid[2].id,
    }
    with pytest.raises(ValueError, match="exists already"):
        image_browser.new_evaluation_dataset("first", [grid[1].id], None)


def _sized(grid, sizes):
    """Give the grid's images these (width, height), in order."""
    from webapp.extensions import db

    for image, (width, height) in zip(grid, sizes, strict=False):
        image.width, image.height = width, height
    db.session.commit()


SIZES = [(64, 48), (48, 640), (800, 600), (1024, 1024), (300, 2000), (256, 256)] * 2


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"px_min": 640}, [1, 2, 3, 4]),  # portrait 48x640 counts by its long side
        ({"px_max": 256}, [0, 5]),
        ({"px_min": 256, "px_max": 800}, [1, 2, 5]),
        ({"px_min": 5000}, []),
    ],
)
def test_the_long_side_filter_pages_in_order(grid, bounds, expected):
    _sized(grid, SIZES)
    wanted = [image.id for i, image in enumerate(grid) if i % 6 in expected]
    for sort in ("id", "-p_fake", "-bytes"):
        seen = all_pages(BrowseFilter(sort=sort, **bounds), size=2)
        assert sorted(seen) == wanted and len(seen) == len(set(seen))
    assert all_pages(BrowseFilter(**bounds), size=2) == wanted


def test_the_long_side_and_file_size_filters_combine(grid):
    _sized(grid, SIZES)
    sizes = {image.id: image.bytes for image in grid}
    limit = sorted(sizes.values())[6] / 1024
    chosen = BrowseFilter(px_min=640, kb_max=limit)
    got = set(all_pages(chosen, size=3))
    assert got == {
        image.id
        for i, image in enumerate(grid)
        if i % 6 in (1, 2, 3, 4) and image.bytes <= limit * 1024
    }
    assert BrowseFilter.from_args(MultiDict({"px_min": "big", "px_max": "900"})).px_max == 900
