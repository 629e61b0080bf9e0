"""patron preferences: the channels a patron prefers, in order, and the optional stages they opted out of

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite 3.35+ drops a column in place): a batch operation would copy and drop the
# patrons table, which the loans, requests and edits refer to.
def upgrade() -> None:
    op.add_column('patrons', sa.Column('channels', sa.String(length=255), server_default='', nullable=False))
    op.add_column('patrons', sa.Column('opt_out', sa.String(length=255), server_default='', nullable=False))


def downgrade() -> None:
    op.drop_column('patrons', 'opt_out')
    op.drop_column('patrons', 'channels')
