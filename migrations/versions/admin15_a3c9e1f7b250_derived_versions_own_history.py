"""derived versions keep no borrowed history: head refits and recalibrations stored their
parent's training curves as their own

A head refit or a recalibration trains no epochs, yet its row copied the parent's history, so
the Versions page and the API showed the parent's curves under the child's name. Their history
is cleared; the parent's rows keep theirs. No schema change.

Revision ID: a3c9e1f7b250
Revises: d7e3b2a9c410
Create Date: 2026-12-01 12:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a3c9e1f7b250'
down_revision = 'd7e3b2a9c410'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE model_versions SET history = NULL WHERE kind IN ('head', 'calib')")


def downgrade():
    pass  # the borrowed curves were the parent's: nothing to put back
