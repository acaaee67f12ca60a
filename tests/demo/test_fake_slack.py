"""The Slack fake answers like Slack's documented Web API (shapes from the method reference pages)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from opsradar.demo.fakes.slack import SlackFake

TOKEN = "xoxb-test-token"


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake(token=TOKEN, channels=["general", "ops"]) as f:
        yield f  # type: ignore[misc]


@pytest.fixture
def client(fake: SlackFake) -> WebClient:
    c = WebClient(token=TOKEN, base_url=fake.url + "/api/")
    c.retry_handlers = []
    return c


def test_post_message_answers_like_the_docs(fake: SlackFake, client: WebClient) -> None:
    # docs: {"ok": true, "channel": "C123ABC456", "ts": "1503435956.000247", "message": {"text": …, "ts": …}}
    resp = client.chat_postMessage(channel="#general", text="Here's a message for you")
    data = resp.data
    assert isinstance(data, dict)
    assert data["ok"] is True
    assert data["channel"] == fake.channel_id("general")
    assert data["channel"].startswith("C")
    whole, _, frac = data["ts"].partition(".")
    assert whole.isdigit()
    assert len(frac) == 6
    assert data["message"]["text"] == "Here's a message for you"
    assert data["message"]["ts"] == data["ts"]
    assert data["message"]["type"] == "message"
    assert data["message"]["bot_id"]


def test_update_answers_like_the_docs_and_keeps_the_edit_history(fake: SlackFake, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="#ops", text="v1", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}])["ts"]
    # docs: {"ok": true, "channel": "C123ABC456", "ts": "1401383885.000061", "text": "Updated text…", "message": {…}}
    resp = client.chat_update(channel=fake.channel_id("ops"), ts=ts, text="Updated text you carefully authored")
    assert resp["ok"] is True
    assert resp["ts"] == ts
    assert resp["text"] == "Updated text you carefully authored"
    assert resp["message"]["text"] == "Updated text you carefully authored"
    [msg] = fake.channel_messages("ops")
    assert msg["text"] == "Updated text you carefully authored"
    assert msg["edits"][0]["text"] == "v1"
    assert msg["blocks"][0]["text"]["text"] == "v1"


def test_errors_use_slack_error_codes(fake: SlackFake, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#nope", text="x")
    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=fake.channel_id("ops"), ts="1.000001", text="x")
    assert exc.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as exc:
        WebClient(token="xoxb-wrong", base_url=fake.url + "/api/").chat_postMessage(channel="#ops", text="x")
    assert exc.value.response["error"] == "invalid_auth"
    raw = httpx.post(fake.url + "/api/chat.postMessage", json={"channel": "#ops", "text": "x"})
    assert raw.status_code == 200
    assert raw.json() == {"ok": False, "error": "not_authed"}
    with pytest.raises(SlackApiError) as exc, pytest.warns(UserWarning, match="text"):
        client.chat_postMessage(channel="#ops", text="")
    assert exc.value.response["error"] == "no_text"


def test_rate_limit_is_http_429_with_retry_after(fake: SlackFake, client: WebClient) -> None:
    fake.rate_limit_next(retry_after=30, method="chat.postMessage")
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#ops", text="x")
    resp = exc.value.response
    assert resp.status_code == 429
    assert resp["error"] == "ratelimited"
    assert {k.lower(): v for k, v in resp.headers.items()}["retry-after"] in ("30", ["30"])
    assert client.chat_postMessage(channel="#ops", text="x")["ok"] is True


def test_form_encoded_calls_and_token_in_body_work(fake: SlackFake) -> None:
    r = httpx.post(fake.url + "/api/chat.postMessage", data={"token": TOKEN, "channel": "ops", "text": "form"})
    assert r.json()["ok"] is True
    assert fake.channel_messages("ops")[0]["text"] == "form"


def test_history_and_replies_with_metadata_and_paging(fake: SlackFake, client: WebClient) -> None:
    meta = {"event_type": "task_created", "event_payload": {"id": "TK-2132"}}
    parent = client.chat_postMessage(channel="#ops", text="parent", metadata=meta)["ts"]
    for i in range(3):
        client.chat_postMessage(channel="#ops", text=f"reply {i}", thread_ts=parent, metadata=meta)
    for i in range(4):
        client.chat_postMessage(channel="#ops", text=f"other {i}")
    cid = fake.channel_id("ops")
    h = client.conversations_history(channel=cid, limit=2)
    assert h["ok"] is True
    assert h["has_more"] is True
    assert len(h["messages"]) == 2
    assert h["messages"][0]["text"] == "other 3", "newest first"
    assert h["response_metadata"]["next_cursor"]
    everything, cursor = [], None
    while True:
        page = client.conversations_history(channel=cid, limit=2, include_all_metadata=True,
                                            **({"cursor": cursor} if cursor else {}))
        everything += page["messages"]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert len(everything) == 5, "thread replies are not in the channel history"
    assert everything[-1]["metadata"] == meta
    assert "metadata" not in client.conversations_history(channel=cid)["messages"][-1]
    rep = client.conversations_replies(channel=cid, ts=parent, include_all_metadata=True)
    assert [m["text"] for m in rep["messages"]] == ["parent", "reply 0", "reply 1", "reply 2"]
    assert all(m["metadata"] == meta for m in rep["messages"])
    with pytest.raises(SlackApiError) as exc:
        client.conversations_replies(channel=cid, ts="1.000001")
    assert exc.value.response["error"] == "thread_not_found"
    view = fake.channel_messages("ops")
    assert [r["text"] for r in view[0]["replies"]] == ["reply 0", "reply 1", "reply 2"]


def test_conversations_list_maps_names_to_ids(fake: SlackFake, client: WebClient) -> None:
    chans = client.conversations_list()["channels"]
    assert {c["name"]: c["id"] for c in chans} == {"general": fake.channel_id("general"), "ops": fake.channel_id("ops")}


def test_5xx_fault_injection(fake: SlackFake, client: WebClient) -> None:
    fake.fail_next(503, path="/api/chat.postMessage")
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#ops", text="x")
    assert exc.value.response.status_code == 503
    assert fake.channel_messages("ops") == []
