"""One self-contained HTML report per run: sections of text, figures, tables and brain maps.

Figures are rendered to PNG and embedded as base64 so the report is a single file that can be
mailed or archived; it is written atomically.
"""

from cortexmap.report.document import (
    EVIDENCE,
    EVIDENCE_INTRO,
    Evidence,
    Finding,
    Report,
    Section,
    findings_table,
)

__all__ = ["EVIDENCE", "EVIDENCE_INTRO", "Evidence", "Finding", "Report", "Section",
           "findings_table"]
