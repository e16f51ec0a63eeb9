"""Data lifecycle: export/import (JSON Lines), copy between databases, restore, retention, doctor.

Built on the store (backups themselves are ``store.backups``, erasure is
``store.erase_user``); used by the CLI, the service and the dashboard.
"""

from agentkeep.lifecycle.copy import CopyReport, copy_database
from agentkeep.lifecycle.export import ExportFilter, ExportResult, export
from agentkeep.lifecycle.importer import MODES, ImportReport, import_file, validate_file
from agentkeep.lifecycle.restore import RestoreReport, restore

__all__ = [
    "MODES",
    "CopyReport",
    "ExportFilter",
    "ExportResult",
    "ImportReport",
    "RestoreReport",
    "copy_database",
    "export",
    "import_file",
    "restore",
    "validate_file",
]
