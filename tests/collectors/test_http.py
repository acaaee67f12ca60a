"""The shared HTTP helpers translate every vendor failure into a collector error with a hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from opsradar.collectors._http import get_json, parse_retry_after, request_json
from opsradar.errors import CollectorError, SourceAuthError, SourceDataError, SourceUnavailable


def _client(status: int, *, headers: dict[str, str] | None = None, **body: object) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, **body)  # type: ignore[arg-type]

    return httpx.Client(base_url="http://user:pw@vendor.test", transport=httpx.MockTransport(handler))


def test_403_is_an_auth_error_about_permissions() -> None:
    with pytest.raises(SourceAuthError) as info:
        get_json(_client(403, json={"errorMessages": ["no browse permission"]}), "/x", source="s", auth_hint="check X")
    assert str(info.value) == ("source 's': GET http://vendor.test/x: 403 Forbidden: no browse permission "
                               "(the account lacks permission; check X)")
    assert "pw" not in str(info.value)


def test_5xx_is_unavailable_and_keeps_a_retry_after_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with pytest.raises(SourceUnavailable) as info:
        get_json(_client(503, headers={"Retry-After": when}, text="maintenance"), "/x", source="s")
    assert info.value.retryable
    assert info.value.retry_after is not None
    assert 80 <= info.value.retry_after <= 90
    assert "503 Service Unavailable: maintenance" in str(info.value)


def test_other_4xx_quote_the_vendor_message_and_allowed_statuses_return_none() -> None:
    with pytest.raises(CollectorError, match="400 Bad Request: Field 'x' does not exist"):
        get_json(_client(400, json={"errorMessages": ["Field 'x' does not exist"], "warningMessages": []}), "/x",
                 source="s")
    assert get_json(_client(404, text="<html>nope</html>"), "/x", source="s", allow_status=(404,)) is None


def test_truncated_json_is_a_data_error() -> None:
    with pytest.raises(SourceDataError, match="expected JSON"):
        request_json(_client(200, text='{"issues": [', headers={"Content-Type": "application/json"}), "GET", "/x",
                     source="s")


def test_a_timeout_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = httpx.Client(base_url="http://vendor.test", transport=httpx.MockTransport(handler))
    with pytest.raises(SourceUnavailable, match=r"GET http://vendor.test/x: timed out \(ReadTimeout\)"):
        get_json(client, "/x", source="s")


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("-3", 0.0), ("2.5", 2.5), ("", None), ("nan", None)])
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected
