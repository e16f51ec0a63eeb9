"""agentkeep_session_idle(): the active-run check of an append, inside its statement (PostgreSQL)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

``messages.append_if_idle`` (OpenAI's rule that no message is added to a
thread while one of its runs is queued, in progress, requires action or is
cancelling) was an append and a check of the runs in one transaction, which
held the session's row for the round trips between them. PostgreSQL now
appends and checks in one autocommit statement: its INSERT calls this
function for the session row the statement's UPDATE has just taken. A
VOLATILE function's query takes a snapshot of its own, so it sees every run
committed before it runs, as the second statement of the transaction did
(the statement's own snapshot would not see a run committed while it waited
for the row). It raises, which undoes the whole statement:

- ``AKB01`` when a run is active, DETAIL ``{"session_id": ..., "run_id": ...}``;
- ``AKN01`` when the session is not of the kind asked (NULL: any kind),
  DETAIL ``{"session_id": ..., "kind": <the kind asked>}``.

SQLite has no stored functions and needs none: its one writer runs the
check after the append in the append's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The active statuses as this revision knows them (models.ACTIVE_RUN_STATUSES);
# a revision that changes them replaces the function.
_CREATE = """
CREATE OR REPLACE FUNCTION agentkeep_session_idle(
    p_tenant text, p_session text, p_kind text, p_wanted text
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    active text;
BEGIN
    IF p_wanted IS NOT NULL AND p_kind IS DISTINCT FROM p_wanted THEN
        RAISE EXCEPTION 'session % is not a %', p_session, p_wanted
            USING ERRCODE = 'AKN01',
            DETAIL = json_build_object('session_id', p_session, 'kind', p_wanted)::text;
    END IF;
    SELECT id INTO active FROM runs
        WHERE tenant_id = p_tenant AND session_id = p_session
          AND status IN ('cancelling', 'in_progress', 'queued', 'requires_action')
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'session % has an active run %', p_session, active
            USING ERRCODE = 'AKB01',
            DETAIL = json_build_object('session_id', p_session, 'run_id', active)::text;
    END IF;
    RETURN true;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agentkeep_session_idle(text, text, text, text)")
