"""Database access: pools, tenant and system sessions, migrations, provisioning."""

from kijko_core.db.session import (
    Session,
    SystemSession,
    TenantSession,
    system_session,
    tenant_session,
)

__all__ = ["Session", "SystemSession", "TenantSession", "system_session", "tenant_session"]
