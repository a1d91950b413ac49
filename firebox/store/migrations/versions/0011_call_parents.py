"""call parents

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_input_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_calls_parent_input_id'), ['parent_input_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_parent_input_id'))
        batch_op.drop_column('parent_input_id')
