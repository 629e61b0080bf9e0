"""operations: the daemon's lease, its run history, the installation guard

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DAY_IN_PROGRESS_OR_DONE = "kind = 'day' AND outcome IN ('running', 'ok')"


def upgrade() -> None:
    op.create_table('installation',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('installation_id', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=255), server_default='', nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('confirmed_by', sa.String(length=255), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installation'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('generation', sa.Integer(), server_default='0', nullable=False),
    sa.Column('acquired_at', sa.Float(), nullable=False),
    sa.Column('renewed_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('runs',
    sa.Column('run_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('run_date', sa.Date(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('holder', sa.String(length=255), server_default='', nullable=False),
    sa.Column('decided', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('retrying', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('dropped', sa.Integer(), server_default='0', nullable=False),
    sa.Column('held', sa.Integer(), server_default='0', nullable=False),
    sa.Column('errors', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_kind_date', ['kind', 'run_date'], unique=False)
        batch_op.create_index('ux_runs_day', ['run_date'], unique=True,
                              sqlite_where=sa.text(DAY_IN_PROGRESS_OR_DONE),
                              postgresql_where=sa.text(DAY_IN_PROGRESS_OR_DONE))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ux_runs_day', sqlite_where=sa.text(DAY_IN_PROGRESS_OR_DONE),
                            postgresql_where=sa.text(DAY_IN_PROGRESS_OR_DONE))
        batch_op.drop_index('ix_runs_kind_date')

    op.drop_table('runs')
    op.drop_table('leases')
    op.drop_table('installation')
