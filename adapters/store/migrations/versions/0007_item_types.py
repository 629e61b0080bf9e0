"""policy: the item type and loan rule of each loan, for audiences and per-library timelines

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('item_type', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('loan_policy', sa.String(length=64), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_column('loan_policy')
        batch_op.drop_column('item_type')
