"""Write the next Alembic revision from the changes in agentkeep/store/schema.py.

    python scripts/new_migration.py "messages: add a column"

Revision 0001 has shipped: a schema change is a new revision, never an edit of
an old one. This brings a scratch SQLite database to the current head, lets
Alembic compare it with schema.py, and writes the difference as revision
``NNNN`` (the next number). Read what it wrote: autogenerate does not see every
change (primary keys, SQLite table options), and PostgreSQL may need steps of
its own. tests/test_migrations.py then checks that head matches schema.py on
both backends.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from agentkeep.store import migrate
from agentkeep.store.dialects import dialect_for_url


def main(message: str) -> Path:
    head = migrate.head_revision()
    rev_id = f"{int(head[:4]) + 1:04d}"
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    with tempfile.TemporaryDirectory() as tmp:
        dialect = dialect_for_url(f"sqlite:///{tmp}/at_head.db")
        try:
            migrate.upgrade(dialect)
            with dialect.engine.connect() as conn:
                command.revision(
                    migrate._config(conn), message=message, autogenerate=True, rev_id=rev_id
                )
                conn.commit()
        finally:
            dialect.dispose()
    written = next((migrate.MIGRATIONS / "versions").glob(f"{rev_id}_*.py"))
    target = written.with_name(f"{rev_id}_{slug}.py")
    text = written.read_text().replace("astext_type=Text()", "astext_type=sa.Text()")
    written.unlink()
    target.write_text(re.sub(r"\n *# ### .*###", "", text))
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "ruff", "format", "-q", str(target)], check=True)
    subprocess.run([bin_dir / "ruff", "check", "--fix", "-q", str(target)], check=False)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit('usage: python scripts/new_migration.py "what the revision changes"')
    print(f"wrote {main(sys.argv[1])}")
