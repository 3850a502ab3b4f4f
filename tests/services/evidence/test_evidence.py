"""Evidence about an image, from evidence the tests make: camera EXIF, a generator's PNG chunk,
a Stable Diffusion watermark, near duplicates and unrelated pictures, C2PA manifests signed with a
throw-away certificate (valid, and tampered after signing)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from tests import evidence_factories as make
from tests.bad_inputs import write_files
from tests.factories import make_prediction, make_version
from webapp.extensions import db
from webapp.models import Image, ImageEvidence
from webapp.services import evidence
from webapp.services.evidence import phash, similar
from webapp.services.importing.importer import import_path
from webapp.services.review import buckets, materialise, queue


def test_camera_exif_is_read_and_weighed_as_weak():
    found = evidence.compute(make.camera_jpeg())["findings"]["metadata"]
    exif = found["details"]["exif"]
    assert (exif["make"], exif["model"]) == ("FUJIFILM", "X-T5")
    assert exif["lens"] == "XF16-55mmF2.8 R LM WR"
    assert exif["capture_time"] == "2026:11:30 08:15:00"
    assert exif["software"].startswith("Digital Camera")
    assert found["weight"] == "weak" and "FUJIFILM X-T5" in found["summary"]
    assert found["details"]["stripped"] is False


def test_jpeg_tables_give_the_quality_and_say_they_are_libjpegs():
    data = make.encode(make.photo(), "JPEG", quality=73)
    jpeg = evidence.compute(data)["findings"]["metadata"]["details"]["jpeg"]
    assert jpeg["estimated_quality"] == 73 and jpeg["standard_tables"] is True
    stripped = evidence.compute(data)["findings"]["metadata"]
    assert stripped["details"]["stripped"] is True and stripped["weight"] == "none"


def test_a_png_parameters_chunk_is_strong_evidence_of_a_generator():
    computed = evidence.compute(make.generator_png())
    found = computed["findings"]["metadata"]
    assert found["weight"] == "strong" and "parameters" in found["summary"]
    assert found["details"]["png_text"]["parameters"].startswith("a lighthouse at dawn")
    assert computed["claims"] == "fake"


def test_the_stable_diffusion_watermark_is_found_and_an_unmarked_image_has_none():
    marked = evidence.compute(make.watermarked_png())["findings"]["watermark"]
    assert marked["status"] == "found" and marked["weight"] == "strong"
    assert marked["details"]["mark"].startswith("Stable Diffusion 1.x")
    plain = evidence.compute(make.encode(make.photo("chelsea", 512), "PNG"))
    assert plain["findings"]["watermark"]["status"] == "none"
    assert "Stable Diffusion XL" in plain["findings"]["watermark"]["details"]["looked_for"]
    assert plain["claims"] is None


def test_small_images_are_not_searched_for_a_watermark():
    small = evidence.compute(make.encode(make.photo(side=64), "PNG"))["findings"]["watermark"]
    assert small["status"] == "not checked" and "256x256" in small["summary"]


def test_near_duplicates_are_close_and_unrelated_pictures_are_far(app_ctx):
    within = app_ctx.config["NEAR_DUPLICATE_DISTANCE"]
    original = make.photo("astronaut")
    base = evidence.compute(make.encode(original, "PNG"))["phash"]
    for name, data in make.near_duplicates(original).items():
        distance = phash.hamming(base, evidence.compute(data)["phash"])
        assert distance <= within, (name, distance)
    for other in make.SAMPLES[1:]:
        distance = phash.hamming(base, evidence.compute(make.encode(make.photo(other)))["phash"])
        assert distance > within, (other, distance)


def test_the_band_index_finds_every_hash_within_seven_bits(app_ctx):
    rng = random.Random(7)
    query = rng.getrandbits(64)
    near = {}
    for image_id, flips in enumerate([0, 1, 3, 5, 7, 8, 20], start=1):
        value = query
        for bit in rng.sample(range(64), flips):
            value ^= 1 << bit
        near[image_id] = flips
        _store_hash(image_id, value)
    found = dict(similar.candidates(query))
    assert found == {image_id: flips for image_id, flips in near.items() if flips <= 7}


def _store_hash(image_id: int, value: int) -> None:
    from tests.factories import make_image

    image = make_image()
    db.session.execute(
        ImageEvidence.__table__.insert(),
        {
            "image_id": image.id,
            "phash": phash.to_signed(value),
            "findings": {},
            "computed_at": image.created_at,
            **{f"phash_band{i}": band for i, band in enumerate(phash.bands(value))},
        },
    )
    db.session.commit()
    assert image.id == image_id


def test_import_stores_evidence_and_near_duplicates_are_listed_with_labels(app_ctx, tmp_path):
    original = make.photo("astronaut")
    camera = make.camera_jpeg(make.photo("hubble_deep_field"))
    files = {"real/astronaut.png": make.encode(original, "PNG"), "real/cam.jpg": camera}
    import_path(write_files(tmp_path / "in", files), dataset="photos")
    variants = make.near_duplicates(original)
    import_path(
        write_files(tmp_path / "later", {f"{k}.jpg": v for k, v in variants.items()}),
        dataset="later",
    )
    rows = db.session.scalars(select(ImageEvidence)).all()
    assert len(rows) == 5 and all(row.phash is not None for row in rows)
    source = db.session.scalar(select(Image).where(Image.file_name == "astronaut.png"))
    stored = db.session.get(ImageEvidence, source.id)
    near = similar.find(phash.from_signed(stored.phash), exclude=source.id)
    assert {item["file_name"] for item in near} == {f"{k}.jpg" for k in variants}
    assert all(item["label"] == "unknown" and item["distance"] <= 6 for item in near)
    resized = db.session.scalar(select(Image).where(Image.file_name == "resized.jpg"))
    back = similar.find(phash.from_signed(db.session.get(ImageEvidence, resized.id).phash))
    labelled = {item["file_name"]: item["label"] for item in back}
    assert labelled["astronaut.png"] == "real" and "cam.jpg" not in labelled
    cam = db.session.scalar(select(Image).where(Image.file_name == "cam.jpg"))
    assert db.session.get(ImageEvidence, cam.id).findings["metadata"]["details"]["camera"]


def test_a_signed_manifest_validates_and_a_tampered_one_does_not():
    pytest.importorskip("c2pa")
    signed = make.signed_jpeg()
    found = evidence.compute(signed)["findings"]["credentials"]
    assert found["status"] == "found" and found["weight"] == "strong"
    assert found["details"]["signer"] == "Test Signer"
    assert found["details"]["trusted"] is False  # a throw-away CA is on no trust list
    assert "realfake-test-generator" in found["details"]["claim_generator"]
    assert found["details"]["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert evidence.compute(signed)["claims"] == "fake"
    broken = evidence.compute(make.tampered(signed))["findings"]["credentials"]
    assert broken["status"] == "invalid" and broken["details"]["failures"]
    assert "INVALID" in broken["summary"]


def test_an_image_without_a_manifest_says_so():
    found = evidence.compute(make.camera_jpeg())["findings"]["credentials"]
    assert found["status"] == "none" and found["weight"] == "none"


def test_generator_evidence_on_a_real_label_puts_the_image_in_the_evidence_bucket(
    app_ctx, tmp_path
):
    files = {"real/generated.png": make.generator_png(), "real/plain.jpg": make.camera_jpeg()}
    import_path(write_files(tmp_path / "in", files), dataset="mixed")
    version = make_version()
    for image in db.session.scalars(select(Image)):
        make_prediction(image, version, p_fake=0.1, ood_score=0.1, audit_key=0.9)
    materialise.rebuild()
    items = {item.file_name: item for item in queue.list_items(limit=10)}
    assert items["generated.png"].bucket == "evidence"
    assert "plain.jpg" not in items  # camera EXIF alone is weak: nothing disagrees
    order = buckets.settings().buckets
    assert order.index("evidence") == order.index("label_issue") + 1  # after label mistakes
    assert "Strong evidence" in items["generated.png"].reason


def test_reports_carry_the_evidence_columns(app_ctx, tmp_path):
    from webapp.services.reporting import reports

    import_path(write_files(tmp_path / "in", {"real/g.png": make.generator_png()}), dataset="r")
    version = make_version()
    image = db.session.scalar(select(Image))
    make_prediction(image, version, p_fake=0.9)  # misclassified: labelled REAL
    scope = reports.resolve_scope(version.name, None, None)
    rows = list(reports.iter_rows(scope))
    assert rows[0]["evidence_claims"] == "fake"
    assert "parameters" in rows[0]["evidence_metadata"]
    assert rows[0]["evidence_watermark"]
    assert set(reports.public_row(rows[0])) >= set(evidence.records.REPORT_COLUMNS)


def test_flask_data_evidence_fills_in_images_stored_without_it(app_ctx, tmp_path):
    import json

    from tests.factories import make_image

    app_ctx.config["EVIDENCE_AT_IMPORT"] = False
    import_path(write_files(tmp_path / "in", {"real/g.png": make.generator_png()}), dataset="old")
    make_image()  # a row made directly, original written
    assert db.session.scalar(select(ImageEvidence)) is None
    result = app_ctx.test_cli_runner().invoke(args=["data", "evidence", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"computed": 2, "missing_original": 0, "images": 2}
    generated = db.session.scalar(select(Image).where(Image.file_name == "g.png"))
    assert db.session.get(ImageEvidence, generated.id).claims == "fake"
    again = app_ctx.test_cli_runner().invoke(args=["data", "evidence", "--json"])
    assert json.loads(again.output)["images"] == 0


@pytest.mark.parametrize("size", [(512, 512), (517, 389)])
def test_the_vectorised_decoder_gives_the_librarys_bits(size):
    import io

    import numpy as np
    from imwatermark.maxDct import EmbedMaxDct
    from PIL import Image as PILImage

    from webapp.services.evidence import watermark

    marked = np.asarray(PILImage.open(io.BytesIO(make.watermarked_png())).convert("RGB"))
    plain = np.asarray(make.photo("coffee", 600).resize(size).convert("RGB"))
    for rgb in (marked, plain):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        assert watermark.block_scores(rgb, "RGB").tolist() == watermark.block_scores(bgr).tolist()
        for expected in watermark.MARKS.values():
            library = EmbedMaxDct(watermarks=[], wmLen=len(expected)).decode(bgr)
            ours = watermark.decode_bits(bgr, len(expected))
            assert ours.tolist() == np.asarray(library, dtype=np.uint8).tolist()


def test_the_haar_band_is_pywavelets_to_the_last_bit():
    import numpy as np
    import pywt

    from webapp.services.evidence import watermark

    for seed in range(3):
        channel = np.random.default_rng(seed).integers(0, 256, (388, 516)).astype(np.float64)
        expected = pywt.dwt2(channel, "haar")[0]
        assert np.array_equal(watermark.haar_approximation(channel), expected)


def test_the_image_record_page_shows_the_evidence_and_near_duplicates(app, client, auth, tmp_path):
    """The admin's image record carries the same evidence as the check page and the desk."""
    image = make.photo()
    files = {
        "real/generated.png": make.generator_png(image),
        "real/copy.png": make.encode(image, "PNG"),
        "fake/plain.jpg": make.camera_jpeg(make.photo("coffee")),
    }
    with app.app_context():
        import_path(write_files(tmp_path / "in", files), dataset="mixed")
        ids = {i.file_name: i.id for i in db.session.scalars(select(Image))}
    auth.login("admin")
    page = client.get(f"/admin/images/{ids['generated.png']}").get_data(as_text=True)
    assert 'id="evidence"' in page and "parameters" in page and "strong" in page
    assert f"/admin/images/{ids['copy.png']}" in page  # the near duplicate, linked
    assert f"/admin/images/{ids['plain.jpg']}" not in page
    plain = client.get(f"/admin/images/{ids['plain.jpg']}").get_data(as_text=True)
    assert "Camera" in plain or "camera" in plain
