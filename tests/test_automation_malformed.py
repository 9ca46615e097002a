"""Malformed input against the automation engine's routes (the review of issue 8): huge and
deep JSON, NUL characters, lone surrogates, NaN and 1e309, odd cron strings and time zones,
regular-expression and JMESPath bombs, out-of-range queries. Never a 500; a refusal is in the
one error shape."""

# ruff: noqa: E501, UP031 — the cases are raw bodies, one a line, easier to read unwrapped (and %-built: they hold braces)
from __future__ import annotations

import json
from typing import Any

from tests.automation import create_skill
from tests.conftest import Account
from tests.habits_kit import create_habit
from tests.reflex_kit import create_reflex

V1 = "/api/v1"
DEEP = "[" * 5000 + "]" * 5000
DEEPO = '{"a":' * 3000 + "1" + "}" * 3000


async def test_malformed_input_is_refused_in_the_error_shape(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill)
    reflex = await create_reflex(client, alice, skill["id"])
    S, H, R = skill["id"], habit["id"], reflex["id"]
    base = '{"name":"Probe %s","promptTemplate":"Write about {{topic}} now.","inputSchema":[{"name":"topic","type":"string"}]'
    cases = [
        ("post", "/skills", base % "a" + ',"parameters":{"temperature":1e309}}'),
        ("post", "/skills", base % "b" + ',"parameters":{"temperature":NaN}}'),
        ("post", "/skills", base % "c" + ',"parameters":{"x":' + DEEP + "}}"),
        ("post", "/skills", base % "d" + ',"typeConfig":' + DEEPO + "}"),
        (
            "post",
            "/skills",
            '{"name":"Nul\\u0000name","promptTemplate":"Write about {{topic}} now.","inputSchema":[{"name":"topic","type":"string"}]}',
        ),
        (
            "post",
            "/skills",
            '{"name":"\\ud800 lone","promptTemplate":"Write about {{topic}} now.","inputSchema":[{"name":"topic","type":"string"}]}',
        ),
        ("post", "/skills", base % "e" + ',"parameters":{"k\\u0000":"v\\u0000"}}'),
        (
            "post",
            "/skills",
            '{"name":"Weird ph","promptTemplate":"Write about {{ topic }} {{a..b}} {{}} {{x.}} now.","inputSchema":[{"name":"topic","type":"string"}]}',
        ),
        ("post", "/skills", base % "f" + ',"inputSchema":[{"name":"topic","type":"string","default":1e309}]}'),
        ("post", "/skills", base % "g" + ',"maxTokens":1e309}'),
        ("post", "/skills", "[]"),
        ("post", "/skills", "null"),
        ("post", "/skills", '"str"'),
        (
            "post",
            "/skills/import",
            '{"version":"1.0","skill":{"id":"%s","organizationId":"x","name":"Imp","promptTemplate":"Write about {{topic}} now.","inputSchema":[{"name":"topic","type":"string"}]}}'
            % S,
        ),
        ("post", "/skills/import", '{"version":"2.0","skill":{}}'),
        ("post", "/skills/import", '{"version":"1.0","skill":' + DEEPO + "}"),
        ("post", f"/skills/{S}/execute", '{"input":{"topic":"\\u0000"}}'),
        ("post", f"/skills/{S}/execute", '{"input":{"topic":' + DEEP + "}}"),
        ("post", f"/skills/{S}/execute", '{"input":{"topic":1e309}}'),
        ("post", f"/skills/{S}/execute", '{"input":{"topic":"x"},"executionType":"habit"}'),
        ("post", f"/skills/{S}/execute", '{"input":{"topic":"x"},"referenceId":"nope"}'),
        ("post", f"/skills/{S}/execute?wait=abc", '{"input":{"topic":"x"}}'),
        ("post", f"/skills/{S}/execute?wait=-1", '{"input":{"topic":"x"}}'),
        ("post", f"/skills/{S}/execute?wait=31", '{"input":{"topic":"x"}}'),
        ("post", f"/skills/{S}/execute?wait=NaN", '{"input":{"topic":"x"}}'),
        ("post", f"/skills/{S}/execute?wait=inf", '{"input":{"topic":"x"}}'),
        ("post", f"/skills/{S}/execute?wait=1e309", '{"input":{"topic":"x"}}'),
        (
            "post",
            "/skills/test",
            '{"promptTemplate":"Write about {{topic}} now.","model":"gpt-4o","input":{"topic":1e309}}',
        ),
        ("get", "/skills?pageSize=0", None),
        ("get", "/skills?pageSize=101", None),
        ("get", "/skills?pageSize=abc", None),
        ("get", "/skills?page=99999999999999999999", None),
        ("get", "/skills?search=%00", None),
        ("get", "/skills?search=%25_%5C", None),
        ("get", "/skills?sortBy=x", None),
        ("get", "/executions?pageSize=0", None),
        ("get", "/executions?pageSize=101", None),
        ("get", "/executions?page=-1", None),
        ("get", "/executions?dateFrom=2024-01-01T00:00:00", None),
        ("get", "/executions?dateFrom=99999-01-01", None),
        ("get", "/executions?dateFrom=0001-01-01T00:00:00Z", None),
        ("get", "/executions?dateTo=9999-12-31T23:59:59Z", None),
        ("get", "/executions?dateFrom=abc", None),
        ("get", "/executions?skillId=abc", None),
        ("get", "/executions?status=x", None),
        ("get", "/executions?search=%00", None),
        ("get", "/executions/stats?period=abc", None),
        ("get", "/executions/stats?dateFrom=0001-01-01T00:00:00Z", None),
        ("get", "/executions/cost-projection?daysAhead=-1", None),
        ("get", "/executions/cost-projection?daysAhead=1e309", None),
        ("get", "/executions/cost-projection?daysAhead=99999999999", None),
        ("get", "/executions/export?format=xml", None),
        ("get", "/executions/export?format=csv&dateFrom=0001-01-01T00:00:00Z", None),
        ("get", "/executions/recent?limit=-1", None),
        ("get", "/executions/recent?limit=100000", None),
        ("get", "/skill-executions?limit=abc", None),
        ("get", "/skill-executions?skillId=abc", None),
        ("get", "/skill-executions?limit=0", None),
        ("delete", "/executions/cleanup?olderThanDays=-1", None),
        ("delete", "/executions/cleanup?olderThanDays=1e309", None),
        ("delete", "/executions/cleanup?olderThanDays=999999999999", None),
        ("get", "/skills/stats/overview?period=1d", None),
        ("get", f"/skills/{S}/stats?period=9999d", None),
        ("get", "/skills/not-a-uuid", None),
        ("get", "/executions/not-a-uuid", None),
        ("get", "/habits/not-a-uuid", None),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0  9 * * *", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *\n", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0\t9 * * *", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * * *", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 31 2 *", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "@reboot", "timezone": "UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "* * * * *", "timezone": "../../etc/passwd"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "UTC\u0000"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "/etc/localtime"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "Europe/../UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "localtime"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "right/UTC"})),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * *", "timezone": "Factory"})),
        ("post", "/habits", '{"skillId":"%s","scheduleCron":"0 9 * * *","config":{"topic":1e309}}' % S),
        ("post", "/habits", '{"skillId":"%s","scheduleCron":"0 9 * * *","config":' % S + DEEPO + "}"),
        ("post", "/habits", json.dumps({"skillId": S, "scheduleCron": "0 9 * * " + "1," * 100 + "2"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": "*/0 * * * *"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": "0 0 30 2 *"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": "1-1000000 * * * *"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": "0 9 * * *", "timezone": "../../etc/passwd"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": 5})),
        ("post", "/habits/validate-cron", json.dumps({"scheduleCron": "0 0 29 2 1"})),
        ("post", "/habits/validate-cron", json.dumps({"cron": "0 0 29 2 1"})),
        ("patch", f"/habits/{H}", json.dumps({"scheduleCron": "0 0 31 2 *"})),
        ("patch", f"/habits/{H}", json.dumps({"timezone": None})),
        ("patch", f"/habits/{H}", json.dumps({"scheduleCron": None})),
        ("patch", f"/habits/{H}", json.dumps({"config": None})),
        ("get", "/habits?pageSize=abc", None),
        ("get", "/habits?skillId=abc", None),
        ("get", "/habits?isActive=maybe", None),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"filters": [{"field": "a", "operator": "regex", "value": "(a+)+$" * 100}]},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"filters": [{"field": "a", "operator": "regex", "value": "(?<=a)b"}]},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"filters": [{"field": "a", "operator": "regex", "value": "\\1(a)"}]},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"expression": "a." * 5000 + "b"},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {"skillId": S, "triggerType": "webhook", "triggerConfig": {}, "conditions": {"expression": "[[[[[[[["}}
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"expression": "(" * 3000 + "a" + ")" * 3000},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"filters": [{"field": "." * 500, "operator": "equals", "value": 1}]},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps(
                {
                    "skillId": S,
                    "triggerType": "webhook",
                    "triggerConfig": {},
                    "conditions": {"filters": [{"field": "a", "operator": "nope", "value": 1}]},
                }
            ),
        ),
        (
            "post",
            "/reflexes",
            json.dumps({"skillId": S, "triggerType": "webhook", "triggerConfig": {}, "conditions": {"filters": "x"}}),
        ),
        ("post", "/reflexes", json.dumps({"skillId": S, "triggerType": "schedule", "triggerConfig": {}})),
        ("post", "/reflexes", json.dumps({"skillId": S, "triggerType": "email", "triggerConfig": {}})),
        ("post", "/reflexes", json.dumps({"skillId": S, "triggerType": "WEBHOOK", "triggerConfig": {}})),
        (
            "post",
            "/reflexes",
            json.dumps({"skillId": S, "triggerType": "event", "triggerConfig": {"eventName": "x" * 1000}}),
        ),
        ("post", "/reflexes", '{"skillId":"%s","triggerType":"webhook","triggerConfig":' % S + DEEPO + "}"),
        (
            "post",
            "/reflexes",
            '{"skillId":"%s","triggerType":"webhook","triggerConfig":{},"conditions":{"filters":[{"field":"a","operator":"gt","value":1e309}]}}'
            % S,
        ),
        ("post", f"/reflexes/{R}/test", '{"payload":' + DEEPO + "}"),
        ("post", f"/reflexes/{R}/test", '{"payload":{"a":1e309}}'),
        ("post", f"/reflexes/{R}/test", '{"payload":"x"}'),
        ("get", "/reflexes?triggerType=x", None),
        ("post", "/skills", base % "h" + ',"typeConfig":{"x":1e309}}'),
        (
            "post",
            "/skills",
            '{"name":"Num","promptTemplate":"Write about {{n}} {{o}} now.","inputSchema":[{"name":"n","type":"number"},{"name":"o","type":"object"}]}',
        ),
        ("post", f"/reflexes/{R}/test", '{"payload":{"a":"\\u0000"}}'),
        ("put", f"/reflexes/{R}", '{"conditions":{"filters":[{"field":"a","operator":"equals","value":1e309}]}}'),
        ("put", "/organizations/current/llm-keys/openai", json.dumps({"apiKey": "sk-\u0000abc"})),
        (
            "put",
            "/organizations/current/llm-keys/openai",
            json.dumps({"apiKey": "sk-abcdef", "baseUrl": "file:///etc/passwd"}),
        ),
        (
            "put",
            "/organizations/current/llm-keys/openai",
            json.dumps({"apiKey": "sk-abcdef", "baseUrl": "http://169.254.169.254/v1"}),
        ),
        ("put", "/organizations/current/llm-keys/../../x", json.dumps({"apiKey": "sk-abcdef"})),
        ("put", "/organizations/current/llm-keys/unknown", json.dumps({"apiKey": "sk-abcdef"})),
        ("put", "/organizations/current/llm-keys/openai", json.dumps({"apiKey": "a"})),
        ("put", "/organizations/current/llm-keys/openai", json.dumps({"apiKey": 5})),
        ("get", "/analytics/summary?period=abc", None),
        (
            "post",
            "/analytics/events",
            json.dumps(
                {"events": [{"type": "conversion_signal", "timestamp": "0001-01-01T00:00:00Z", "sessionId": "s"}]}
            ),
        ),
        ("post", "/analytics/events", '{"events":[{"type":"conversion_signal","properties":' + DEEPO + "}]}"),
        (
            "post",
            "/analytics/events",
            '{"events":[{"type":"conversion_signal","properties":{"x":1e309},"sessionId":"s","timestamp":"2026-11-29T00:00:00Z"}]}',
        ),
        ("post", "/analytics/events", '{"events":' + DEEP + "}"),
        ("post", "/analytics/events", '{"events":"x"}'),
    ]
    bad = []
    for method, path, raw in cases:
        kwargs: dict[str, Any] = {"headers": alice.headers | {"content-type": "application/json"}}
        if raw is not None:
            kwargs["data"] = raw.encode("utf-8", "surrogatepass")
        resp = await getattr(client, method)(V1 + path, **kwargs)
        text = await resp.get_data(as_text=True)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        shape_ok = resp.status_code < 400 or (isinstance(body, dict) and {"detail", "code", "message"} <= body.keys())
        if resp.status_code >= 500 or not shape_ok:
            bad.append((method, path[:80], (raw or "")[:80], resp.status_code, text[:300]))
    listed = await client.get(V1 + "/skills?search=Num", headers=alice.headers)
    num = (await listed.get_json())["skills"]
    if num:
        for raw in (
            '{"input":{"n":1e309}}',
            '{"input":{"o":{"x":1e309}}}',
            '{"input":{"o":{"x":NaN}}}',
            '{"input":{"n":NaN}}',
        ):
            resp = await client.post(
                V1 + f"/skills/{num[0]['id']}/execute",
                data=raw,
                headers=alice.headers | {"content-type": "application/json"},
            )
            text = await resp.get_data(as_text=True)
            if resp.status_code >= 500:
                bad.append(("execute", raw, resp.status_code))
    assert bad == []
