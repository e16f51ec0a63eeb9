"""Regenerate revision 0001 from agentkeep/store/schema.py.

Only while 0001 is unreleased: once a release ships, schema changes are new
revisions (``alembic revision --autogenerate`` against a database at head).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from agentkeep.store._dialects import dialect_for_url
from agentkeep.store.migrate import MIGRATIONS, _config

target = MIGRATIONS / "versions" / "0001_initial_schema.py"
target.unlink(missing_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    dialect = dialect_for_url(f"sqlite:///{tmp}/gen.db")
    with dialect.engine.connect() as conn:
        command.revision(_config(conn), message="initial schema", autogenerate=True, rev_id="0001")
        conn.commit()
    dialect.dispose()
text = target.read_text()
text = text.replace("astext_type=Text()", "astext_type=sa.Text()")
text = re.sub(r"\n *# ### .*###", "", text)
text = re.sub(r"Create Date: .*", "Create Date: 2026-11-22", text)
target.write_text(text)
bin_dir = Path(sys.executable).parent
subprocess.run([bin_dir / "ruff", "format", "-q", str(target)], check=True)
subprocess.run([bin_dir / "ruff", "check", "--fix", "-q", str(target)], check=False)
print(f"wrote {target}")
