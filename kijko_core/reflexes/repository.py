"""Every SQL statement of reflexes, composed once from the column list (decision 0020).
Reflexes are organization data: reads say ``organization_id = $1`` (row-level security says
the same); who may change which reflex is the service's question."""

from __future__ import annotations

from kijko_core.db import sql
from kijko_core.reflexes.models import COLUMNS
from kijko_core.skills import repository as skills

FOR_SKILL = sql.compose(
    "SELECT {columns} FROM kijko.reflexes WHERE skill_id = $1 ORDER BY created_at DESC, id DESC",
    columns=COLUMNS,
)
GET = sql.compose("SELECT {columns} FROM kijko.reflexes WHERE organization_id = $1 AND id = $2", columns=COLUMNS)
GET_FOR_UPDATE = GET + " FOR UPDATE"
_FILTERED = sql.Fragment(
    "organization_id = $1 AND ($2::uuid IS NULL OR skill_id = $2)"
    " AND ($3::text IS NULL OR trigger_type = $3) AND ($4::boolean IS NULL OR is_active = $4)"
)
LIST = sql.compose(
    "SELECT {columns} FROM kijko.reflexes WHERE {filtered} ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6",
    columns=COLUMNS,
    filtered=_FILTERED,
)
COUNT = sql.compose("SELECT count(*) FROM kijko.reflexes WHERE {filtered}", filtered=_FILTERED)
SKILLS_BY_ID = sql.compose(
    "SELECT {columns} FROM {table} WHERE organization_id = $1 AND id = ANY($2::uuid[])",
    columns=skills.TABLE.select_list,
    table=skills.TABLE,
)
SKILL = sql.compose(
    "SELECT {columns} FROM {table} WHERE organization_id = $1 AND id = $2",
    columns=skills.TABLE.select_list,
    table=skills.TABLE,
)
INSERT = sql.compose(
    "INSERT INTO kijko.reflexes (id, organization_id, skill_id, user_id, trigger_type, trigger_config,"
    " conditions, secret_ciphertext, is_active)\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)\nRETURNING {columns}",
    columns=COLUMNS,
)
UPDATE = sql.compose(
    "UPDATE kijko.reflexes SET trigger_config = $3, conditions = $4, is_active = $5, updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2 RETURNING {columns}",
    columns=COLUMNS,
)
SET_ACTIVE = sql.compose(
    "UPDATE kijko.reflexes SET is_active = $3, updated_at = now(),"
    " consecutive_failures = CASE WHEN $3 THEN 0 ELSE consecutive_failures END,"
    " last_error_message = CASE WHEN $3 THEN NULL ELSE last_error_message END"
    "\nWHERE organization_id = $1 AND id = $2 RETURNING {columns}",
    columns=COLUMNS,
)
DELETE = "DELETE FROM kijko.reflexes WHERE organization_id = $1 AND id = $2"
# The previous secret stays valid for 24 h; the one before it, if still valid, ends now.
ROTATE_SECRET = (
    "UPDATE kijko.reflexes SET previous_secret_ciphertext = secret_ciphertext,"
    " previous_secret_expires_at = CASE WHEN secret_ciphertext IS NULL THEN NULL ELSE now() + interval '24 hours' END,"
    " secret_ciphertext = $3, updated_at = now() WHERE organization_id = $1 AND id = $2"
)
SECRET = "SELECT secret_ciphertext FROM kijko.reflexes WHERE organization_id = $1 AND id = $2"
STATS = (
    "SELECT count(*) AS total, count(*) FILTER (WHERE is_active) AS active,"
    " coalesce(sum(trigger_count), 0)::bigint AS triggers,"
    " count(*) FILTER (WHERE consecutive_failures > 0) AS failed"
    " FROM kijko.reflexes WHERE organization_id = $1"
)
TRIGGERS_BY_TYPE = (
    "SELECT trigger_type, coalesce(sum(trigger_count), 0)::bigint AS triggers FROM kijko.reflexes"
    " WHERE organization_id = $1 GROUP BY trigger_type"
)
# The latest executions reflexes started (newest first, the id breaking ties).
RECENT_TRIGGERS = (
    "SELECT r.id AS reflex_id, s.name AS skill_name, e.executed_at AS triggered_at, r.trigger_type"
    " FROM kijko.skill_executions e"
    " JOIN kijko.reflexes r ON r.organization_id = e.organization_id AND r.id = e.reference_id"
    " JOIN kijko.skills s ON s.organization_id = r.organization_id AND s.id = r.skill_id"
    " WHERE e.organization_id = $1 AND e.execution_type = 'reflex'"
    " ORDER BY e.executed_at DESC, e.id DESC LIMIT 5"
)

# --- firing (kijko_core/reflexes/fire.py) ---------------------------------------------------------

COUNT_TRIGGER = (
    "UPDATE kijko.reflexes SET trigger_count = trigger_count + 1, last_triggered_at = now()"
    " WHERE organization_id = $1 AND id = $2"
)
#: The active ``event`` reflexes of an organization listening to one event name.
EVENT_REFLEXES = sql.compose(
    "SELECT {columns} FROM kijko.reflexes WHERE organization_id = $1 AND trigger_type = 'event' AND is_active"
    " AND trigger_config ->> 'eventName' = $2 ORDER BY created_at, id",
    columns=COLUMNS,
)
TRIGGER_TYPE = "SELECT trigger_type FROM kijko.reflexes WHERE organization_id = $1 AND id = $2"
#: Webhook ids received before ``$1`` days ago, ``$2`` at most (the sweeper's bounded batch).
FORGET_DELIVERIES = (
    "DELETE FROM kijko.reflex_deliveries WHERE ctid IN (SELECT ctid FROM kijko.reflex_deliveries"
    " WHERE received_at < now() - make_interval(days => $1) LIMIT $2)"
)

# --- the webhook receiver (kijko_core/reflexes/receiver.py) ---------------------------------------

#: The database's clock with the reflex and its secrets, if any (a LEFT JOIN: one row either way).
WEBHOOK_LOOKUP = sql.compose(
    "SELECT now() AS received_at, r.secret_ciphertext, r.previous_secret_ciphertext,"
    " r.previous_secret_expires_at > now() AS previous_valid, {columns}"
    "\nFROM (SELECT 1) AS one LEFT JOIN kijko.reflexes r ON r.id = $1",
    columns=sql.Fragment(", ".join(f"r.{name.strip()}" for name in COLUMNS.split(","))),
)
#: The delivery id, remembered once (no row back: it was seen before).
REMEMBER_DELIVERY = (
    "INSERT INTO kijko.reflex_deliveries (organization_id, reflex_id, delivery_id, matched)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING delivery_id"
)
FIRST_DELIVERY = (
    "SELECT matched, execution_id FROM kijko.reflex_deliveries"
    " WHERE organization_id = $1 AND reflex_id = $2 AND delivery_id = $3"
)
DELIVERY_STARTED = (
    "UPDATE kijko.reflex_deliveries SET execution_id = $4"
    " WHERE organization_id = $1 AND reflex_id = $2 AND delivery_id = $3"
)
