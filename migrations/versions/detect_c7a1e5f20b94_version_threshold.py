"""model_versions.threshold: each version's FAKE threshold (its operating point)

A version calls an image FAKE when its calibrated p_fake reaches the threshold fitted on the
validation split for a target false-positive rate on real images (REALFAKE_TARGET_FPR). Versions
from before keep 0.5, the threshold their verdicts were made with.

Revision ID: c7a1e5f20b94
Revises: e1a7c3d9f210
Create Date: 2026-12-01 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c7a1e5f20b94'
down_revision = 'e1a7c3d9f210'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('model_versions') as batch_op:
        batch_op.add_column(
            sa.Column('threshold', sa.Double(), nullable=False, server_default=sa.text('0.5'))
        )


def downgrade():
    with op.batch_alter_table('model_versions') as batch_op:
        batch_op.drop_column('threshold')
