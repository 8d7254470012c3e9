# ruff: noqa: E501
"""Initial fleet store

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22

Creates every table of the fleet store (redfleet.store.models) and of the drive-health history
(redfleet.store.ssd). Self-contained: it does not import the models, so later model edits cannot change it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target', sa.String(length=300), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=20), nullable=False),
    sa.Column('details', JSON_TYPE, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_target'), ['target'], unique=False)

    op.create_table('credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credentials')),
    sa.UniqueConstraint('name', name=op.f('uq_credentials_name'))
    )
    op.create_table('ssd_drives',
    sa.Column('drive_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=True),
    sa.Column('slot', sa.String(length=64), nullable=True),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('serial', sa.String(length=128), nullable=True),
    sa.Column('firmware', sa.String(length=64), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('drive_id', name=op.f('pk_ssd_drives'))
    )
    with op.batch_alter_table('ssd_drives', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ssd_drives_node_id'), ['node_id'], unique=False)

    op.create_table('bmc_endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=300), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=True),
    sa.Column('tls_fingerprint', sa.String(length=200), nullable=True),
    sa.Column('tls_pinned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tls_pinned_by', sa.String(length=200), nullable=True),
    sa.Column('tls_pending_fingerprint', sa.String(length=200), nullable=True),
    sa.Column('tls_pending_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('vendor', sa.String(length=200), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('firmware_version', sa.String(length=200), nullable=True),
    sa.Column('redfish_version', sa.String(length=50), nullable=True),
    sa.Column('capabilities', JSON_TYPE, nullable=True),
    sa.Column('last_contact_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], name=op.f('fk_bmc_endpoints_credential_id_credentials'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bmc_endpoints')),
    sa.UniqueConstraint('origin', name=op.f('uq_bmc_endpoints_origin'))
    )
    with op.batch_alter_table('bmc_endpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bmc_endpoints_credential_id'), ['credential_id'], unique=False)

    op.create_table('ssd_health_samples',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('drive_id', sa.String(length=128), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('smart', sa.JSON(), nullable=True),
    sa.Column('ocp', sa.JSON(), nullable=True),
    sa.Column('log_page_version', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['drive_id'], ['ssd_drives.drive_id'], name=op.f('fk_ssd_health_samples_drive_id_ssd_drives'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ssd_health_samples')),
    sa.UniqueConstraint('drive_id', 'collected_at', name='uq_ssd_health_samples_drive_time')
    )
    with op.batch_alter_table('ssd_health_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ssd_health_samples_drive_id'), ['drive_id'], unique=False)
        batch_op.create_index('ix_ssd_health_samples_time', ['collected_at'], unique=False)

    op.create_table('nodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('bmc_id', sa.Integer(), nullable=True),
    sa.Column('rack', sa.String(length=100), nullable=True),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('tags', JSON_TYPE, nullable=False),
    sa.Column('flavor', sa.String(length=100), nullable=True),
    sa.Column('vendor', sa.String(length=200), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('serial', sa.String(length=200), nullable=True),
    sa.Column('host_address', sa.String(length=300), nullable=True),
    sa.Column('state', sa.String(length=50), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('health', sa.String(length=50), nullable=True),
    sa.Column('last_inventory_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bmc_id'], ['bmc_endpoints.id'], name=op.f('fk_nodes_bmc_id_bmc_endpoints'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nodes')),
    sa.UniqueConstraint('name', name=op.f('uq_nodes_name'))
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_bmc_id'), ['bmc_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_nodes_rack'), ['rack'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('severity', sa.String(length=20), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('payload', JSON_TYPE, nullable=True),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_events_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_events_node_at', ['node_id', 'at'], unique=False)

    op.create_table('inventory_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('data', JSON_TYPE, nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_inventory_snapshots_node_id_nodes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_snapshots'))
    )
    with op.batch_alter_table('inventory_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_inventory_snapshots_node_collected', ['node_id', 'collected_at'], unique=False)

    op.create_table('inventory_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('previous_snapshot_id', sa.Integer(), nullable=True),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('category', sa.String(length=50), nullable=False),
    sa.Column('component', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('field', sa.String(length=100), nullable=True),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_inventory_changes_node_id_nodes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['previous_snapshot_id'], ['inventory_snapshots.id'], name=op.f('fk_inventory_changes_previous_snapshot_id_inventory_snapshots'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['snapshot_id'], ['inventory_snapshots.id'], name=op.f('fk_inventory_changes_snapshot_id_inventory_snapshots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_changes'))
    )
    with op.batch_alter_table('inventory_changes', schema=None) as batch_op:
        batch_op.create_index('ix_inventory_changes_node_detected', ['node_id', 'detected_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inventory_changes_previous_snapshot_id'), ['previous_snapshot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inventory_changes_snapshot_id'), ['snapshot_id'], unique=False)



def downgrade() -> None:
    # redfleet never drops fleet data: there is no way back from the initial revision but a backup.
    raise NotImplementedError("downgrading below the initial revision would drop every table; restore a backup")
