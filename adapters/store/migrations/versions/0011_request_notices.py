"""request notices: the day a request became ready, and what a ledger row's id names (loan or request)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, as 0010: no batch copy of the tables others refer to.
def upgrade() -> None:
    op.add_column('requests', sa.Column('ready_on', sa.Date(), nullable=True))
    op.add_column('ledger', sa.Column('kind', sa.String(length=8), server_default='loan', nullable=False))


def downgrade() -> None:
    op.drop_column('ledger', 'kind')
    op.drop_column('requests', 'ready_on')
