"""one singleton job in flight: jobs.is_singleton and a partial unique index

Training runs one job at a time. That was a check before the insert, which two concurrent submits
could both pass; the partial unique index makes the second insert fail on SQLite and PostgreSQL.
Jobs already in the table keep is_singleton false (the check before the insert still sees them),
so databases with two in-flight training jobs from before still upgrade.

Revision ID: b4f2c8d17e30
Revises: a4f2c8d1e6b3
Create Date: 2026-11-27 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b4f2c8d17e30'
down_revision = 'a4f2c8d1e6b3'
branch_labels = None
depends_on = None

SINGLETON_IN_FLIGHT = "is_singleton AND state IN ('queued', 'running')"


def upgrade():
    op.add_column(
        'jobs',
        sa.Column('is_singleton', sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        'ux_jobs_singleton_in_flight',
        'jobs',
        ['kind'],
        unique=True,
        sqlite_where=sa.text(SINGLETON_IN_FLIGHT),
        postgresql_where=sa.text(SINGLETON_IN_FLIGHT),
    )


def downgrade():
    op.drop_index('ux_jobs_singleton_in_flight', table_name='jobs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('is_singleton')
