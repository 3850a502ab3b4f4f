"""worker presence: one row per running job worker

``flask model train --wait`` and the other waits say at once when a job is queued and no worker
is running; a worker registers here when it starts, refreshes ``seen_at`` while it runs and
removes its row when it stops.

Revision ID: c7d1e5a9f2b4
Revises: b4f2c8d17e30
Create Date: 2026-12-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c7d1e5a9f2b4'
down_revision = 'b4f2c8d17e30'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'workers',
        sa.Column('identity', sa.String(length=255), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.Column('settings', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('identity'),
    )


def downgrade():
    op.drop_table('workers')
