"""decision idempotency key: review_decisions.idempotency_key, unique per user

The review desk sends each decision with a key it chose; a request repeated (a double click, a
re-send after a reload, a retry after a lost answer) finds the row of the first and is not stored
twice. NULL for decisions from before, and for clients that send no key.

Revision ID: c7a1e5f30b92
Revises: c7d1e5a9f2b4
Create Date: 2026-12-01 09:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "c7a1e5f30b92"
down_revision = "c7d1e5a9f2b4"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("review_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ux_review_decisions_user_key", ["user_id", "idempotency_key"], unique=True
        )


def downgrade():
    with op.batch_alter_table("review_decisions", schema=None) as batch_op:
        batch_op.drop_index("ux_review_decisions_user_key")
        batch_op.drop_column("idempotency_key")
