"""The shared fake server: keep-alive answers without Nagle's delay, a prompt and clean stop."""

from __future__ import annotations

import socket

import httpx
import pytest

from opsradar.demo.fakes.base import FakeServer
from opsradar.demo.fakes.elasticsearch import ElasticsearchFake
from opsradar.demo.fakes.jenkins import FakeJenkins
from opsradar.demo.fakes.jira import FakeJira
from opsradar.demo.fakes.slack import SlackFake


class Echo(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.route("POST", r"/echo", lambda req: (200, {"got": req.json()}))


@pytest.mark.parametrize("make", [Echo, ElasticsearchFake, FakeJenkins, FakeJira, lambda: SlackFake(token="t")])
def test_every_fake_turns_nagle_off_for_its_connections(make: object) -> None:
    fake = make()  # type: ignore[operator]
    with fake:
        handler = fake._httpd.RequestHandlerClass
        assert handler.disable_nagle_algorithm is True  # TCP_NODELAY on each accepted socket


def test_keep_alive_requests_on_one_connection_and_a_clean_stop() -> None:
    srv = Echo().start()
    url = srv.url
    with httpx.Client(base_url=url) as client:
        for i in range(20):
            assert client.post("/echo", json=i).json() == {"got": i}
    assert len(srv.requests) == 20
    srv.stop()
    srv.stop()  # idempotent
    host, port = url.removeprefix("http://").split(":")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=1):
        pass
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.url


def test_stop_wakes_the_server_without_counting_a_request() -> None:
    srv = Echo().start()
    with httpx.Client(base_url=srv.url) as client:
        assert client.post("/echo", json=1).status_code == 200  # a keep-alive connection stays open
        thread = srv._thread
        srv.stop()
        assert thread is not None
        assert not thread.is_alive()  # serve_forever has returned
    assert [r.path for r in srv.requests] == ["/echo"]


def test_a_stopped_fake_starts_again_on_a_new_port() -> None:
    srv = Echo()
    with srv:
        assert httpx.post(srv.url + "/echo", json="a").json() == {"got": "a"}
    with srv:
        assert httpx.post(srv.url + "/echo", json="b").json() == {"got": "b"}
