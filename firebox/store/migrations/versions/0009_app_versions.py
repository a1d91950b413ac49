"""app versions

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_versions',
    sa.Column('app_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('rollback_of', sa.Integer(), nullable=True),
    sa.Column('client_version', sa.String(length=32), nullable=False),
    sa.Column('deployed_by', sa.String(length=128), nullable=False),
    sa.Column('commit', sa.String(length=48), nullable=True),
    sa.Column('functions', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('app_id', 'version')
    )


def downgrade() -> None:
    op.drop_table('app_versions')
