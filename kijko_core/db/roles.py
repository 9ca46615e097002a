"""The three database roles (ARCHITECTURE §2) and how their names are derived from the prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def quote_identifier(name: str) -> str:
    """Quote a role or database name we generated ourselves; anything unusual is refused."""
    if not _IDENTIFIER.match(name):
        raise ValueError("unsafe SQL identifier")
    return '"' + name + '"'


@dataclass(frozen=True)
class RoleNames:
    owner: str
    app: str
    system: str

    @classmethod
    def from_prefix(cls, prefix: str) -> RoleNames:
        return cls(owner=f"{prefix}_owner", app=f"{prefix}_app", system=f"{prefix}_system")

    @property
    def prefix(self) -> str:
        return self.owner.removesuffix("_owner")

    def placeholders(self) -> dict[str, str]:
        """Values for the ``:owner_role``-style placeholders in migration files."""
        return {
            ":owner_role": quote_identifier(self.owner),
            ":app_role": quote_identifier(self.app),
            ":system_role": quote_identifier(self.system),
        }
