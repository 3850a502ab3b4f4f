"""``flask backup create|restore``: an online backup, taken while a reviewer keeps deciding,
restores into a fresh instance with the same rows and blobs, and that instance serves the desk."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from tests.factories import make_active_version, make_scored_image, make_version
from tests.helpers import login, make_user
from webapp import config, create_app
from webapp.extensions import db
from webapp.models import Image, Job, ModelVersion, ReviewDecision
from webapp.services.storage import original_path, thumbnail_path

IGNORED = {("model_versions", "checkpoint_path")}  # rewritten to the new instance on restore


@pytest.fixture
def desk(app_ctx):
    """A small desk: an active version with a real checkpoint, scored images, a reviewer."""
    version = make_active_version()
    images = [
        make_scored_image(version, p, label=label)
        for p, label in [(0.5, "real"), (0.45, "fake"), (0.6, "unknown"), (0.9, "real")] * 3
    ]
    make_version("v2", active=False)  # a version without a checkpoint: backed up as it is
    reviewer = make_user("reviewer1")
    return {"images": [image.id for image in images], "reviewer": reviewer.id}


class DecisionWriter(threading.Thread):
    """A reviewer who keeps deciding during the backup. Each transaction writes a decision and a
    job row that name the same marker, so a backup that read the tables at different moments
    would hold one without the other."""

    def __init__(self, app, image_ids, user_id):
        super().__init__(daemon=True)
        self.app, self.image_ids, self.user_id = app, image_ids, user_id
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            with self.app.app_context():
                while not self.stop.is_set():
                    marker = f"marker {self.written}"
                    image_id = self.image_ids[self.written % len(self.image_ids)]
                    db.session.add(Job(kind="sleep", params={"marker": marker}))
                    db.session.add(
                        ReviewDecision(
                            image_id=image_id,
                            user_id=self.user_id,
                            label_before="real",
                            choice="fake",
                            note=marker,
                        )
                    )
                    db.session.commit()
                    self.written += 1
                db.session.remove()
        except BaseException as error:  # reported by the test
            self.error = error


def table_rows(table) -> dict:
    """Every row of ``table`` by primary key, as plain JSON-able values."""
    key = [column.name for column in table.primary_key.columns]
    rows = {}
    for row in db.session.execute(select(table)).mappings():
        values = json.loads(json.dumps(dict(row), default=str))
        for ignored_table, column in IGNORED:
            if table.name == ignored_table:
                values.pop(column)
        rows[tuple(values[k] for k in key)] = values
    return rows


@pytest.fixture
def fresh_app(tmp_path, monkeypatch, empty_database):
    """Makes second apps, each on its own instance folder and an empty database (a restore's
    target); their connections are closed before the databases go."""
    made = []

    def make(name: str):
        monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path / name))
        empty_database()
        made.append(create_app(config.TestConfig()))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def invoke(app, *args):
    """Run a CLI command on ``app`` (its context pushed: the test holds the first app's)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def test_online_backup_restores_into_a_fresh_instance(app, desk, tmp_path, fresh_app):
    # The writer decides only the first copy of the four kinds of image: deciding every image
    # would empty the queue whenever it got 12 decisions in before the snapshot (a faster CPU
    # or a slower backup did), and the restored desk would have nothing to serve.
    writer = DecisionWriter(app, desk["images"][:4], desk["reviewer"])
    writer.start()
    try:
        # Wait for the first write so the backup surely runs while decisions are being made.
        while writer.written == 0 and writer.is_alive():
            time.sleep(0.01)
        result = app.test_cli_runner().invoke(args=["backup", "create", str(tmp_path / "bk")])
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None, writer.error
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())

    with app.app_context():
        source = {table.name: table_rows(table) for table in db.metadata.sorted_tables}
    restored_app = fresh_app("restored")
    result = invoke(restored_app, "backup", "restore", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output

    with restored_app.app_context():
        restored = {table.name: table_rows(table) for table in db.metadata.sorted_tables}
        # Every restored row is the source's row; the source has since written more decisions.
        for name, rows in restored.items():
            assert len(rows) == manifest["tables"][name]
            assert all(source[name][key] == row for key, row in rows.items()), name
        decisions = len(restored["review_decisions"])
        assert 0 < decisions <= len(source["review_decisions"])
        # One snapshot: each decision's job is there and no job without its decision.
        job_markers = {row["params"]["marker"] for row in restored["jobs"].values()}
        assert job_markers == {row["note"] for row in restored["review_decisions"].values()}
        for image in db.session.scalars(select(Image)):
            assert hashlib.sha256(original_path(image).read_bytes()).hexdigest() == image.sha256
            assert thumbnail_path(image.sha256).is_file()
        v1 = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "v1"))
        assert v1.is_active and v1.checkpoint_path.startswith(restored_app.instance_path)
        assert (tmp_path / "restored" / "models" / "v1.pt").read_bytes() == (
            tmp_path / "instance" / "models" / "v1.pt"
        ).read_bytes()

    client = restored_app.test_client()
    assert login(client, "reviewer1").status_code == 302
    response = client.get("/api/v1/queue")
    assert response.status_code == 200
    served_ids = {item["image_id"] for item in response.get_json()["items"]}
    assert served_ids and served_ids <= set(desk["images"])
    for kind in ("thumbnail", "original"):
        with client.get(f"/review/image/{desk['images'][0]}/{kind}") as served:
            assert served.status_code == 200 and served.data


def test_restore_refuses_a_non_empty_instance_without_force(app, desk, tmp_path, fresh_app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["backup", "create", str(tmp_path / "bk")]).exit_code == 0
    other = fresh_app("other")
    with other.app_context():
        upgrade()
        make_scored_image(make_version("v9"), 0.3, label="real")
    result = invoke(other, "backup", "restore", str(tmp_path / "bk"))
    assert result.exit_code == 1 and "not empty" in result.output and "--force" in result.output
    with other.app_context():
        assert db.session.scalar(select(func.count(Image.id))) == 1  # nothing was touched
    forced = invoke(other, "backup", "restore", "--force", str(tmp_path / "bk"))
    assert forced.exit_code == 0, forced.output
    with other.app_context():
        names = set(db.session.scalars(select(ModelVersion.name)))
        assert names == {"v1", "v2"}
        assert db.session.scalar(select(func.count(Image.id))) == len(desk["images"])


@pytest.mark.parametrize(
    "prepare, message",
    [
        (lambda path: path.mkdir(), "no manifest.json"),
        (
            lambda path: path.mkdir() or (path / "manifest.json").write_text('{"format": 99}'),
            "backup format 99",
        ),
    ],
)
def test_restore_refuses_what_is_not_a_backup(app, tmp_path, prepare, message):
    prepare(tmp_path / "bk")
    result = app.test_cli_runner().invoke(args=["backup", "restore", str(tmp_path / "bk")])
    assert result.exit_code == 1 and message in result.output


def test_backup_refuses_a_non_empty_target(app, tmp_path):
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "precious.txt").write_text("keep me")
    result = app.test_cli_runner().invoke(args=["backup", "create", str(tmp_path / "bk")])
    assert result.exit_code == 1 and "not empty" in result.output
    assert (tmp_path / "bk" / "precious.txt").read_text() == "keep me"
