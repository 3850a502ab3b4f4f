"""image evidence and checks: per-image evidence with an indexed perceptual hash; checks

Every image gets one image_evidence row at import (content credentials, metadata, invisible
watermark, perceptual hash as four indexed 16-bit bands for near-duplicate look-ups). A check is
one image someone asked about, scored by the check job.

Revision ID: c7e1d2a9f405
Revises: c7a1e5f20b94
Create Date: 2026-12-01 09:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c7e1d2a9f405'
down_revision = 'c7a1e5f20b94'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'image_evidence',
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('phash', sa.BigInteger(), nullable=True),
        sa.Column('phash_band0', sa.Integer(), nullable=True),
        sa.Column('phash_band1', sa.Integer(), nullable=True),
        sa.Column('phash_band2', sa.Integer(), nullable=True),
        sa.Column('phash_band3', sa.Integer(), nullable=True),
        sa.Column('claims', sa.String(length=8), nullable=True),
        sa.Column('findings', sa.JSON(), nullable=False),
        sa.Column('computed_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('image_id'),
    )
    with op.batch_alter_table('image_evidence', schema=None) as batch_op:
        for band in range(4):
            batch_op.create_index(
                f'ix_image_evidence_phash_band{band}', [f'phash_band{band}'], unique=False
            )
        batch_op.create_index('ix_image_evidence_claims', ['claims'], unique=False)

    op.create_table(
        'checks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.Column('file_name', sa.String(length=500), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('sent_to_review_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('checks', schema=None) as batch_op:
        batch_op.create_index('ix_checks_image_id', ['image_id'], unique=False)
        batch_op.create_index('ix_checks_sent_to_review_at', ['sent_to_review_at'], unique=False)


def downgrade():
    op.drop_table('checks')
    op.drop_table('image_evidence')
