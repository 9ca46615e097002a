"""Creating projects through the API, for tests of other things than creation."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account

API = "/api/v1/projects"


async def created(client: Any, account: Account, name: str, *, type: str = "manual", **body: Any) -> dict[str, Any]:
    """The project ``account`` creates (201 asserted), as the API answers it."""
    response = await client.post(API, json={"name": name, "type": type, **body}, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    project: dict[str, Any] = (await response.get_json())["project"]
    return project
