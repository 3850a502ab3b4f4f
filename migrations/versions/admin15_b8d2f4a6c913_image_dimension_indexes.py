"""images: indexes on width and height, for the image browser's dimension filter

The browser filters by file size and now by pixel dimensions too: ``px_min`` / ``px_max`` bound
the long side (the longer of width and height), asked as ``width >= n OR height >= n`` and
``width <= n AND height <= n`` so that plain column indexes serve both bounds on SQLite and
PostgreSQL alike (SQLite cannot reflect an expression index).

Revision ID: b8d2f4a6c913
Revises: a3c9e1f7b250
Create Date: 2026-12-01 13:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b8d2f4a6c913'
down_revision = 'a3c9e1f7b250'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_images_width_height', 'images', ['width', 'height'])
    op.create_index('ix_images_height', 'images', ['height'])


def downgrade():
    op.drop_index('ix_images_height', table_name='images')
    op.drop_index('ix_images_width_height', table_name='images')
