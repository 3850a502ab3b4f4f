"""Factories for test data: users, tiny images, logins. Tests make their own data."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import User

PASSWORD = "correct horse battery"


def make_user(username: str, role: str = "reviewer", password: str = PASSWORD) -> User:
    """Create (or return) a user with a known password."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, role=role)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
    return user


def csrf_token(client, path: str) -> str:
    """Read the CSRF token from a page's meta tag or hidden field."""
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf[-_]token" (?:content|value)="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    token = csrf_token(client, "/auth/login")
    return client.post(
        "/auth/login", data={"username": username, "password": password, "csrf_token": token}
    )


def make_image_bytes(
    seed: int = 0, size: tuple[int, int] = (48, 40), fmt: str = "JPEG", quality: int = 90
) -> bytes:
    """A small deterministic image encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt == "JPEG" else {}
    PILImage.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# The pages an admin opens (a job's page needs a job, so tests that create one add it).
ADMIN_PAGES = [
    "/review/",
    "/check/",
    "/admin/",
    "/admin/datasets/",
    "/admin/datasets/stats",
    "/admin/versions",
    "/admin/jobs",
    "/admin/tokens",
    "/reports/",
    "/review/escalations",
    "/api/v1/docs",
]
