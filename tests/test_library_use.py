"""``kijko_core`` used directly by another Python service (docs/library.md): the same rules as
through the API, and no web framework loaded."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from kijko_core.db import tenant_session
from kijko_core.errors import InvalidToken
from kijko_core.projects import service
from kijko_core.projects.models import CreateProject, ProjectListQuery
from kijko_core.runtime import Kijko
from tests.conftest import Account


async def test_the_documented_flow_sees_the_callers_projects_only(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    for account, name in ((alice, "Alice's"), (bob, "Bob's")):
        identity = await kijko.identity.verifier.verify(account.access_token)
        async with tenant_session(kijko.app_db, identity) as db:
            await service.create(db, CreateProject(name=name, type="manual", privacy="shared"))

    identity = await kijko.identity.verifier.verify(alice.access_token)
    async with tenant_session(kijko.app_db, identity, readonly=True) as db:
        page = await service.list_projects(db, ProjectListQuery(page=1, page_size=20))
    assert [project.name for project in page.data] == ["Alice's"]

    with pytest.raises(InvalidToken):
        await kijko.identity.verifier.verify(alice.access_token + "x")


def test_the_library_loads_no_web_framework() -> None:
    # The import contract checks our source; this checks what actually gets loaded. (click is
    # not listed: the `databases` library itself imports it.)
    code = (
        "import sys\n"
        "import kijko_core.runtime, kijko_core.projects.service, kijko_core.auth.keycloak.provider\n"
        "loaded = {'quart', 'quart_schema', 'werkzeug', 'flask', 'uvicorn', 'hypercorn', 'huey', 'socketio'}\n"
        "print(sorted(loaded & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
