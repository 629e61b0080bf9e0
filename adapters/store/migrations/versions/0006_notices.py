"""notices: the message as sent, every delivery attempt, every staff action

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('messages',
    sa.Column('notice_key', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=255), server_default='', nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['notice_key'], ['notices.key'], name=op.f('fk_messages_notice_key_notices')),
    sa.PrimaryKeyConstraint('notice_key', name=op.f('pk_messages'))
    )
    op.create_table('attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('notice_key', sa.String(length=255), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='send', nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.Text(), server_default='', nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reply', sa.Text(), server_default='', nullable=False),
    sa.Column('reference', sa.Text(), server_default='', nullable=False),
    sa.Column('actor', sa.String(length=255), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts'))
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempts_notice_key'), ['notice_key'], unique=False)
    op.create_table('staff_actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('notice_key', sa.String(length=255), nullable=True),
    sa.Column('patron_id', sa.String(length=64), nullable=True),
    sa.Column('why', sa.Text(), server_default='', nullable=False),
    sa.Column('detail', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_actions'))
    )
    with op.batch_alter_table('staff_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_actions_notice_key'), ['notice_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_actions_patron_id'), ['patron_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('staff_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_actions_patron_id'))
        batch_op.drop_index(batch_op.f('ix_staff_actions_notice_key'))
    op.drop_table('staff_actions')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempts_notice_key'))
    op.drop_table('attempts')
    op.drop_table('messages')
