"""environments

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

NAMED = ('dicts', 'queues', 'secrets', 'volumes')


def upgrade() -> None:
    op.create_table('environments',
    sa.Column('workspace_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('workspace_id', 'name')
    )
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environment', sa.String(length=64), nullable=False,
                                      server_default='main'))
    for table in NAMED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('environment', sa.String(length=64), nullable=False,
                                          server_default='main'))
            batch_op.drop_constraint(f'uq_{table}_workspace_name', type_='unique')
            batch_op.create_unique_constraint(f'uq_{table}_workspace_environment_name',
                                              ['workspace_id', 'environment', 'name'])


def downgrade() -> None:
    for table in NAMED:
        # Names were unique per workspace before: only main's objects can stay.
        op.execute(f"DELETE FROM {table} WHERE environment != 'main'")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'uq_{table}_workspace_environment_name', type_='unique')
            batch_op.create_unique_constraint(f'uq_{table}_workspace_name',
                                              ['workspace_id', 'name'])
            batch_op.drop_column('environment')
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_column('environment')
    op.drop_table('environments')
