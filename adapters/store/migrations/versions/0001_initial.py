"""initial schema: patrons, loans, requests, notices, ledger

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('notices',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('run_date', sa.Date(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('library', sa.String(length=32), nullable=True),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('reference', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_notices'))
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_status', ['status'], unique=False)

    op.create_table('patrons',
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('barcode', sa.String(length=64), nullable=False),
    sa.Column('first_name', sa.String(length=255), server_default='', nullable=False),
    sa.Column('last_name', sa.String(length=255), server_default='', nullable=False),
    sa.Column('email', sa.String(length=255), server_default='', nullable=False),
    sa.Column('preferred_language', sa.String(length=255), server_default='', nullable=False),
    sa.Column('account_type', sa.String(length=255), server_default='', nullable=False),
    sa.Column('record_type', sa.String(length=255), server_default='', nullable=False),
    sa.Column('user_group', sa.String(length=255), server_default='', nullable=False),
    sa.Column('address_line1', sa.String(length=255), server_default='', nullable=False),
    sa.Column('address_line2', sa.String(length=255), server_default='', nullable=False),
    sa.Column('postal_code', sa.String(length=255), server_default='', nullable=False),
    sa.Column('city', sa.String(length=255), server_default='', nullable=False),
    sa.Column('country', sa.String(length=255), server_default='', nullable=False),
    sa.Column('phone', sa.String(length=255), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('patron_id', name=op.f('pk_patrons')),
    sa.UniqueConstraint('barcode', name=op.f('uq_patrons_barcode'))
    )
    op.create_table('ledger',
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('notice_key', sa.String(length=255), nullable=True),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['notice_key'], ['notices.key'], name=op.f('fk_ledger_notice_key_notices')),
    sa.PrimaryKeyConstraint('loan_id', 'due_date', 'stage', name=op.f('pk_ledger'))
    )
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_notice_key'), ['notice_key'], unique=False)

    op.create_table('loans',
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('item_barcode', sa.String(length=64), server_default='', nullable=False),
    sa.Column('title', sa.Text(), server_default='', nullable=False),
    sa.Column('library', sa.String(length=32), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('returned_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=64), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['patron_id'], ['patrons.patron_id'], name=op.f('fk_loans_patron_id_patrons')),
    sa.PrimaryKeyConstraint('loan_id', name=op.f('pk_loans'))
    )
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.create_index('ix_loans_open_due', ['due_date'], unique=False, sqlite_where=sa.text('returned_on IS NULL'), postgresql_where=sa.text('returned_on IS NULL'))
        batch_op.create_index(batch_op.f('ix_loans_patron_id'), ['patron_id'], unique=False)

    op.create_table('requests',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.Text(), server_default='', nullable=False),
    sa.Column('library', sa.String(length=32), nullable=False),
    sa.Column('pickup_library', sa.String(length=32), nullable=False),
    sa.Column('placed_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=64), server_default='', nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['patron_id'], ['patrons.patron_id'], name=op.f('fk_requests_patron_id_patrons')),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_requests'))
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requests_patron_id'), ['patron_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requests_patron_id'))

    op.drop_table('requests')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loans_patron_id'))
        batch_op.drop_index('ix_loans_open_due', sqlite_where=sa.text('returned_on IS NULL'), postgresql_where=sa.text('returned_on IS NULL'))

    op.drop_table('loans')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_notice_key'))

    op.drop_table('ledger')
    op.drop_table('patrons')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_status')

    op.drop_table('notices')

