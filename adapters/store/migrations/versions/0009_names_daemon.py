"""desk name search words; the daemon's running policy

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patron_name_words',
    sa.Column('word', sa.String(length=64), nullable=False),
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('word', 'patron_id', name=op.f('pk_patron_name_words'))
    )
    with op.batch_alter_table('patron_name_words', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patron_name_words_patron_id'), ['patron_id'], unique=False)
    op.create_table('daemon_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=255), server_default='', nullable=False),
    sa.Column('policy_fingerprint', sa.String(length=128), server_default='', nullable=False),
    sa.Column('policy_loaded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('policy_summary', sa.Text(), server_default='', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_daemon_state'))
    )
    # Words of the patrons already there (the desk's search reads only this table).
    from adapters.store.names import backfill
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table('daemon_state')
    with op.batch_alter_table('patron_name_words', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patron_name_words_patron_id'))
    op.drop_table('patron_name_words')
