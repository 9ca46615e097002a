"""Every SQL statement of reflexes, composed once from the column list (decision 0020)."""

from __future__ import annotations

from kijko_core.db import sql
from kijko_core.reflexes.models import COLUMNS

FOR_SKILL = sql.compose(
    "SELECT {columns} FROM kijko.reflexes WHERE skill_id = $1 ORDER BY created_at DESC, id DESC",
    columns=COLUMNS,
)
