"""Enrichment from signatures: a contact's mobile, website, company as signed, honorific and
suffix apart from the name, and where each enriched value came from (typed or a signature,
when, which message); the company's name provenance; the organisation's default phone region

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 23:55:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("contact") as b:
        b.add_column(sa.Column("mobile", text(), nullable=True))
        b.add_column(sa.Column("website", text(), nullable=True))
        b.add_column(sa.Column("company_name", text(), nullable=True))
        b.add_column(sa.Column("honorific", text(), nullable=False, server_default=""))
        b.add_column(sa.Column("name_suffix", text(), nullable=False, server_default=""))
        b.add_column(sa.Column("provenance", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("company") as b:
        b.add_column(sa.Column("provenance", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("organisation") as b:
        b.add_column(sa.Column("phone_region", text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisation") as b:
        b.drop_column("phone_region")
    with op.batch_alter_table("company") as b:
        b.drop_column("provenance")
    with op.batch_alter_table("contact") as b:
        for column in ("provenance", "name_suffix", "honorific", "company_name", "website", "mobile"):
            b.drop_column(column)
