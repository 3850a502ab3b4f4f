"""login_failures: failed logins, counted by every web worker alike

Login throttling kept its counts in each gunicorn worker's memory, so two workers allowed twice
the tries. One row per failed login (name tried, address, time) in the database is shared by all
of them.

Revision ID: d7e3b2a9c410
Revises: c5a1d9e7f203
Create Date: 2026-12-01 09:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd7e3b2a9c410'
down_revision = 'c5a1d9e7f203'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'login_failures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=80), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_login_failures_username', 'login_failures', ['username'])
    op.create_index('ix_login_failures_address', 'login_failures', ['address'])
    op.create_index('ix_login_failures_created_at', 'login_failures', ['created_at'])


def downgrade():
    op.drop_table('login_failures')
