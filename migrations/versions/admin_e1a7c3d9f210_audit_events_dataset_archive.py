"""admin desk: audit events, archived datasets, import runs that outlive their dataset

- ``audit_events``: the audit trail of everything that is not a review decision (activations,
  imports, deletions, token and account changes), and the decisions of deleted datasets, copied
  here before their rows go.
- ``datasets.archived_at``: an archived dataset stays in the database but leaves reviewers'
  filters and new trainings.
- ``imports.dataset_id`` nullable and ``imports.dataset_name``: a failed or empty import keeps
  its record (and its reason) after the empty dataset it created is removed.
- ``ix_images_format_bytes`` and ``ix_images_bytes_id`` for the image browser's format and size
  filters and its file-size sort (keyset pages walk the index); ``ix_predictions_version_ood``
  for its out-of-distribution sort and filter.
- ``review_requests``: images an admin sent to the review queue from the image browser (the
  queue's ``requested`` bucket).

Revision ID: e1a7c3d9f210
Revises: c7a1e5f30b92
Create Date: 2026-12-01 09:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "e1a7c3d9f210"
down_revision = 'c7a1e5f30b92'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=False, server_default=""),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("summary", sa.Text(), nullable=False, server_default=""),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "created_at"])
    op.create_index("ix_audit_events_user", "audit_events", ["user_id", "created_at"])
    op.create_index("ix_audit_events_image_sha256", "audit_events", ["image_sha256"])
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("archived_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("imports") as batch:
        batch.add_column(
            sa.Column("dataset_name", sa.String(length=200), nullable=False, server_default="")
        )
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=True)
    op.execute(
        "UPDATE imports SET dataset_name = "
        "(SELECT name FROM datasets WHERE datasets.id = imports.dataset_id)"
    )
    op.create_index("ix_images_format_bytes", "images", ["format", "bytes"])
    op.create_index("ix_images_bytes_id", "images", ["bytes", "id"])
    op.create_index(
        "ix_predictions_version_ood", "predictions", ["model_version_id", "ood_score", "image_id"]
    )
    op.create_table(
        "review_requests",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("image_id"),
    )


def downgrade():
    op.drop_table("review_requests")
    op.drop_index("ix_predictions_version_ood", table_name="predictions")
    op.drop_index("ix_images_bytes_id", table_name="images")
    op.drop_index("ix_images_format_bytes", table_name="images")
    with op.batch_alter_table("imports") as batch:
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("dataset_name")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("archived_at")
    op.drop_table("audit_events")
