"""proxy tokens

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('proxy_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('proxy_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proxy_tokens_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proxy_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proxy_tokens_workspace_id'))

    op.drop_table('proxy_tokens')
