"""facts: why a loan was closed by rappel, and every successful import or pull

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_reason', sa.Text(), nullable=True))
    op.create_table('fact_imports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('facts_date', sa.Date(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.Integer(), server_default='0', nullable=False),
    sa.Column('inserted', sa.Integer(), server_default='0', nullable=False),
    sa.Column('changed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('unchanged', sa.Integer(), server_default='0', nullable=False),
    sa.Column('closed', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fact_imports'))
    )
    with op.batch_alter_table('fact_imports', schema=None) as batch_op:
        batch_op.create_index('ix_fact_imports_kind_finished', ['kind', 'finished_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fact_imports', schema=None) as batch_op:
        batch_op.drop_index('ix_fact_imports_kind_finished')
    op.drop_table('fact_imports')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_column('closed_reason')
