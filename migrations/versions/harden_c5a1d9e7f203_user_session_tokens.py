"""users.session_token: revocable sessions

Every session and remember-me cookie names the user's session token beside the user's id; logout
and a password change replace the token, so all of that user's sessions end at once. Existing
users get a random token each; their sessions from before (which name no token) end with the
upgrade, and they log in again.

Revision ID: c5a1d9e7f203
Revises: c7e1d2a9f405
Create Date: 2026-12-01 09:30:00.000000

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5a1d9e7f203'
down_revision = 'c7e1d2a9f405'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        'users',
        sa.Column('session_token', sa.String(length=64), nullable=False, server_default=''),
    )
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('session_token', sa.String))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(session_token=secrets.token_hex(16))
        )


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_token')
