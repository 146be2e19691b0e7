"""approvals: request info, step timers, delegations, sent cards

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approval_delegations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delegator_id', sa.Integer(), nullable=False),
    sa.Column('delegate_id', sa.Integer(), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delegate_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['delegator_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('approval_delegations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_delegations_delegate_id'), ['delegate_id'], unique=False)
        batch_op.create_index('ix_approval_delegations_delegator', ['delegator_id', 'until'], unique=False)

    op.create_table('approval_cards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('outbox_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('card_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['approval_requests.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('outbox_key')
    )
    with op.batch_alter_table('approval_cards', schema=None) as batch_op:
        batch_op.create_index('ix_approval_cards_request', ['request_id', 'seq'], unique=False)

    op.create_table('approval_info',
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('discount_amount', sa.Float(), nullable=True),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['approval_requests.id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('approval_timers',
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('active_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('original_approver_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['original_approver_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['approval_requests.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['approval_steps.id'], ),
    sa.PrimaryKeyConstraint('step_id')
    )
    with op.batch_alter_table('approval_timers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_timers_request_id'), ['request_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('approval_timers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_timers_request_id'))

    op.drop_table('approval_timers')
    op.drop_table('approval_info')
    with op.batch_alter_table('approval_cards', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_cards_request')

    op.drop_table('approval_cards')
    with op.batch_alter_table('approval_delegations', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_delegations_delegator')
        batch_op.drop_index(batch_op.f('ix_approval_delegations_delegate_id'))

    op.drop_table('approval_delegations')
