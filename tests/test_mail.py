"""The mailer's templates and outbox (issue 6 §4, docs/mail.md): rendering is substitution and
loops only, HTML-escaped in the HTML part; ``mail.send`` writes the rendered mail in the
caller's transaction under row-level security."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core import mail
from kijko_core.db.session import system_session, tenant_session
from kijko_core.mail import outbox, rendering
from kijko_core.runtime import Kijko
from tests.conftest import Account

HOSTILE = "<script>alert('x')</script> & \"quoted\""


def sample(placeholders: dict[str, Any]) -> dict[str, Any]:
    """A value for every name a template uses: hostile text, a list of two for a loop."""
    return {
        name: [sample(inner), sample(inner)] if isinstance(inner, dict) else f"{name} {HOSTILE}"
        for name, inner in placeholders.items()
    }


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", rendering.names())
def test_every_shipped_template_renders_with_sample_values(name: str) -> None:
    template = rendering.load(name)
    values = sample(template.placeholders())
    rendered = template.render(values)
    assert rendered.subject and "\n" not in rendered.subject
    assert "{{" not in rendered.text + rendered.html
    assert "<script>" not in rendered.html  # every value escaped
    assert "&lt;script&gt;" in rendered.html or not template.placeholders()
    for name_used in template.placeholders():
        values_without = {k: v for k, v in values.items() if k != name_used}
        with pytest.raises(rendering.TemplateError, match="no value"):
            template.render(values_without)


def test_at_least_one_template_is_shipped() -> None:
    assert "test_message" in rendering.names()


def part(source: str, values: dict[str, Any], *, escape: bool = True) -> str:
    return rendering._render(rendering.parse(source), [values], escape=escape)


def test_substitution_escapes_in_html_and_not_in_text() -> None:
    assert part('<a title="{{t}}">{{t}}</a>', {"t": "\"><b>&'"}) == (
        '<a title="&quot;&gt;&lt;b&gt;&amp;&#x27;">&quot;&gt;&lt;b&gt;&amp;&#x27;</a>'
    )
    assert part("{{t}}", {"t": "<b>"}, escape=False) == "<b>"
    assert part("{{ n }} files", {"n": 3}) == "3 files"


def test_loops_repeat_per_item_with_outer_names_visible() -> None:
    source = "Dear {{name}}:\n{{#rows}}\n- {{label}} ({{name}})\n{{/rows}}\nbye\n"
    out = part(source, {"name": "Ada", "rows": [{"label": "a"}, {"label": "b", "name": "inner"}]})
    assert out == "Dear Ada:\n- a (Ada)\n- b (inner)\nbye\n"  # section lines leave no blanks
    assert part("[{{#rows}}x{{/rows}}]", {"rows": []}) == "[]"


@pytest.mark.parametrize(
    "source",
    [
        "{{{raw}}}",  # no unescaped output
        "{{^inverted}}x{{/inverted}}",  # no conditionals
        "{{> partial}}",
        "{{a.b}}",
        "{{#a}}x",  # never closed
        "x{{/a}}",  # closes nothing
        "{{#a}}{{/b}}",
        "{{ name",
        "name }}",
        "{{! comment }}",
    ],
)
def test_anything_but_substitution_and_loops_is_a_syntax_error(source: str) -> None:
    with pytest.raises(rendering.TemplateError):
        rendering.parse(source)


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{{x}}", {}),
        ("{{x}}", {"x": None}),
        ("{{x}}", {"x": True}),  # a flag is logic
        ("{{x}}", {"x": ["a"]}),
        ("{{#x}}.{{/x}}", {"x": "abc"}),  # a string is not a list
        ("{{#x}}.{{/x}}", {"x": {"a": 1}}),
        ("{{#x}}.{{/x}}", {"x": [1, 2]}),
        ("{{#x}}{{y}}{{/x}}", {"x": [{}]}),
    ],
)
def test_values_that_do_not_fit_are_errors(source: str, values: dict[str, Any]) -> None:
    with pytest.raises(rendering.TemplateError):
        part(source, values)


def test_unknown_templates_and_unsafe_names_are_refused() -> None:
    for name in ("no_such_template", "../secrets", "Test_message", ""):
        with pytest.raises(rendering.TemplateError):
            rendering.load(name)


def test_a_value_cannot_break_the_subject_line() -> None:
    template = rendering.load("test_message")
    values = sample(template.placeholders())
    with pytest.raises(rendering.TemplateError, match="one non-empty line"):
        template.render({**values, "instance": "x\r\nBcc: victim@example.com"})


# --- the outbox -------------------------------------------------------------------------------

VALUES = {"instance": "kijko.test", "details": [{"label": "a", "value": "<b>"}]}


async def test_send_writes_the_rendered_mail_in_the_tenant_transaction(kijko: Kijko, alice: Account) -> None:
    async with tenant_session(kijko.app_db, alice.identity) as db:
        outbox_id = await mail.send(
            db, to="Someone@Example.com", template="test_message", values=VALUES, org_id=UUID(alice.org_id)
        )
    async with system_session(kijko.system_db) as db:
        row = await outbox.get(db, outbox_id)
    assert row is not None
    assert row.organization_id == UUID(alice.org_id) and row.state == "queued" and row.attempts == 0
    assert row.recipient == "Someone@example.com"  # the domain normalized, the local part kept
    assert row.subject == "Kijko test message from kijko.test"
    assert row.text_body is not None and "- a: <b>" in row.text_body
    assert row.html_body is not None and "<li>a: &lt;b&gt;</li>" in row.html_body


async def test_a_rolled_back_transaction_leaves_no_mail(kijko: Kijko, alice: Account) -> None:
    class Abort(Exception):
        pass

    recipient = f"rollback-{uuid.uuid4().hex}@example.com"
    with pytest.raises(Abort):
        async with tenant_session(kijko.app_db, alice.identity) as db:
            await mail.send(db, to=recipient, template="test_message", values=VALUES, org_id=UUID(alice.org_id))
            raise Abort
    async with system_session(kijko.system_db) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.mail_outbox WHERE recipient = $1", recipient) == 0


async def test_outbox_rows_are_confined_to_their_organization(kijko: Kijko, alice: Account, bob: Account) -> None:
    async with tenant_session(kijko.app_db, alice.identity) as db:
        mine = await mail.send(
            db, to="a@example.com", template="test_message", values=VALUES, org_id=UUID(alice.org_id)
        )
        # Not in another organization's name, and not as system mail.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with db.savepoint():
                await mail.send(db, to="a@example.com", template="test_message", values=VALUES, org_id=UUID(bob.org_id))
        with pytest.raises(ValueError, match="system session"):
            await mail.send(db, to="a@example.com", template="test_message", values=VALUES, org_id=None)
    async with tenant_session(kijko.app_db, bob.identity) as db:
        assert await outbox.get(db, mine) is None
        assert await db.fetchval("SELECT count(*) FROM kijko.mail_outbox WHERE organization_id IS NULL") == 0


async def test_system_mail_has_no_organization_and_only_the_system_role_sees_it(kijko: Kijko, alice: Account) -> None:
    async with system_session(kijko.system_db) as db:
        system_mail = await mail.send(db, to="ops@example.com", template="test_message", values=VALUES, org_id=None)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        assert await outbox.get(db, system_mail) is None
    async with system_session(kijko.system_db) as db:
        row = await outbox.get(db, system_mail)
        assert row is not None and row.organization_id is None


@pytest.mark.parametrize(
    "to",
    [
        "not an address",
        "a@b",
        "x@example.com\r\nBcc: y@example.com",
        "A <a@example.com>",
        "a@example.com, b@example.com",
        "",
    ],
)
async def test_recipients_that_are_not_one_address_are_refused(kijko: Kijko, to: str) -> None:
    async with system_session(kijko.system_db) as db:
        with pytest.raises(mail.InvalidRecipient):
            await mail.send(db, to=to, template="test_message", values=VALUES, org_id=None)


async def test_finishing_is_compare_and_set_and_erases_the_bodies(kijko: Kijko) -> None:
    async with system_session(kijko.system_db) as db:
        outbox_id = await mail.send(db, to="cas@example.com", template="test_message", values=VALUES, org_id=None)
        attempt = await outbox.begin_attempt(db, outbox_id)
        assert attempt is not None and attempt.attempts == 1 and attempt.text_body
        assert await outbox.finish(db, outbox_id, sent=True)
        assert not await outbox.finish(db, outbox_id, sent=False, error="late")  # already sent
        assert await outbox.begin_attempt(db, outbox_id) is None
        row = await outbox.get(db, outbox_id)
    assert row is not None and row.state == "sent" and row.finished_at is not None
    assert row.text_body is None and row.html_body is None and row.last_error is None


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.com", "not an SMTP URL"),
        ("smtp://", "not an SMTP URL"),
        ("smtp://mail.example.com:99999", "not an SMTP URL"),
        ("smtp://u:p@mail.example.com?starttls=off", "without credentials"),
        ("smtps://mail.example.com?starttls=off", "without credentials"),
        ("smtp://mail.example.com?verify=no", "only option"),
        ("smtp://mail.example.com/path", "no path"),
    ],
)
def test_smtp_urls_are_checked_without_showing_them(url: str, problem: str) -> None:
    from kijko_core.config import load_settings
    from kijko_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        load_settings(smtp_url=url, mail_from="kijko@example.com")
    (line,) = raised.value.problems
    assert line.startswith("KIJKO_SMTP_URL: ") and problem in line and "mail.example.com" not in line


def test_smtp_settings_need_a_sender_and_mask_the_password() -> None:
    from kijko_core.config import load_settings
    from kijko_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="KIJKO_MAIL_FROM: required"):
        load_settings(smtp_url="smtp://mail.example.com")
    with pytest.raises(ConfigurationError, match="KIJKO_MAIL_FROM: not an email address"):
        load_settings(mail_from="Kijko <nobody>")
    settings = load_settings(smtp_url="smtps://u%40x:pa%3Ass@mail.example.com", mail_from="Kijko <k@example.com>")
    assert "pa%3Ass" not in repr(settings) and "pa%3Ass" not in settings.model_dump_json()
    assert '"smtp_url":"smtps://u%40x:***@mail.example.com"' in settings.model_dump_json()
    from kijko_core.mail.transport import SmtpServer

    server = SmtpServer.from_url(settings.smtp_url.get_secret_value() if settings.smtp_url else "")
    assert (server.username, server.password, server.port, server.implicit_tls) == ("u@x", "pa:ss", 465, True)
    assert "pa:ss" not in repr(server)


def test_an_overlong_subject_is_an_error() -> None:
    template = rendering.load("test_message")
    values = sample(template.placeholders())
    with pytest.raises(rendering.TemplateError, match="longer than 998"):
        template.render({**values, "instance": "x" * 1000})
