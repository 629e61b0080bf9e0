"""patron services: audit trail of patron changes, protected fields edited locally

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patron_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=64), server_default='', nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('old_value', sa.Text(), server_default='', nullable=False),
    sa.Column('new_value', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patron_audit'))
    )
    with op.batch_alter_table('patron_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patron_audit_patron_id'), ['patron_id'], unique=False)

    op.create_table('patron_local_edits',
    sa.Column('patron_id', sa.String(length=64), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('edited_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['patron_id'], ['patrons.patron_id'],
                            name=op.f('fk_patron_local_edits_patron_id_patrons')),
    sa.PrimaryKeyConstraint('patron_id', 'field', name=op.f('pk_patron_local_edits'))
    )


def downgrade() -> None:
    op.drop_table('patron_local_edits')
    with op.batch_alter_table('patron_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patron_audit_patron_id'))
    op.drop_table('patron_audit')
