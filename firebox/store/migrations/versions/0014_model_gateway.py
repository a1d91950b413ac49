"""model gateway: requests with their tokens, gateway keys, workspace limits

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_requests',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('workspace_id', sa.String(length=32), nullable=False),
        sa.Column('app_id', sa.String(length=32), nullable=False),
        sa.Column('function_id', sa.String(length=32), nullable=False),
        sa.Column('model', sa.String(length=260), nullable=False),
        sa.Column('base', sa.String(length=130), nullable=False),
        sa.Column('adapter', sa.String(length=130), nullable=True),
        sa.Column('key_id', sa.String(length=32), nullable=True),
        sa.Column('container_id', sa.String(length=32), nullable=True),
        sa.Column('endpoint', sa.String(length=32), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('stream', sa.Boolean(), nullable=False),
        sa.Column('prompt_tokens', sa.Integer(), nullable=False),
        sa.Column('completion_tokens', sa.Integer(), nullable=False),
        sa.Column('cached_tokens', sa.Integer(), nullable=False),
        sa.Column('usage_counted', sa.Boolean(), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=False),
        sa.Column('ttft_ms', sa.Float(), nullable=True),
        sa.Column('duration_ms', sa.Float(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_model_requests_workspace_created', 'model_requests',
                    ['workspace_id', 'created_at'], unique=False)
    op.create_table(
        'model_keys',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('workspace_id', sa.String(length=32), nullable=False),
        sa.Column('environment', sa.String(length=64), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('models', sa.Text(), nullable=True),
        sa.Column('limits', sa.Text(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_model_keys_workspace_id'), 'model_keys', ['workspace_id'],
                    unique=False)
    op.create_table(
        'model_limits',
        sa.Column('workspace_id', sa.String(length=32), nullable=False),
        sa.Column('limits', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('workspace_id'),
    )


def downgrade() -> None:
    op.drop_table('model_limits')
    op.drop_index(op.f('ix_model_keys_workspace_id'), table_name='model_keys')
    op.drop_table('model_keys')
    op.drop_index('ix_model_requests_workspace_created', table_name='model_requests')
    op.drop_table('model_requests')
