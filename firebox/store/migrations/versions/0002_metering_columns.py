"""metering columns

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cpu', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('memory_mb', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('gpu', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('ready_at', sa.Float(), nullable=True))

    with op.batch_alter_table('outputs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('container_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('exec_seconds', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('outputs', schema=None) as batch_op:
        batch_op.drop_column('exec_seconds')
        batch_op.drop_column('container_id')

    with op.batch_alter_table('containers', schema=None) as batch_op:
        batch_op.drop_column('ready_at')
        batch_op.drop_column('gpu')
        batch_op.drop_column('memory_mb')
        batch_op.drop_column('cpu')

