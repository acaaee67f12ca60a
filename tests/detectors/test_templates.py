"""Log templates: generic masking, the word guard, post-merging and persistence in the store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from opsradar.detectors.templates import LogTemplater, mask_message, signature
from opsradar.store import Store


def test_masks_common_variables() -> None:
    params: list[str] = []
    out = mask_message("conn from 10.1.2.3:80 to db.example.com id=7 path /var/log/x.log at 0x1f", params)
    assert out == "conn from <IP> to <HOST> id=<V> path <PATH> at <HEX>"
    assert params == ["10.1.2.3:80", "db.example.com", "/var/log/x.log", "0x1f", "7"]


def test_signature_merges_runs_of_variables() -> None:
    assert signature(["sent", "<NUM>", "<NUM>", "bytes"]) == signature(["sent", "<*>", "bytes"])
    assert signature(["state:<NUM>,", "ok"]) == "state:<*>, ok"


def test_constant_words_are_never_generalised() -> None:
    tpl = LogTemplater(None)
    ids = {tpl.add(f'10.0.0.{i} "{verb} /v2/servers HTTP/1.1" status: 200 len: {i}').template_id
           for i in range(20) for verb in ("GET", "POST")}
    assert len(ids) == 2


def test_same_template_whatever_the_variables() -> None:
    tpl = LogTemplater(None)
    first = tpl.add("PacketResponder 1 for block blk_38865049064139660 terminating")
    second = tpl.add("PacketResponder 0 for block blk_-6952295868487656571 terminating")
    assert first.is_new
    assert not second.is_new
    assert first.template_id == second.template_id
    assert second.template == "PacketResponder <*> for block <*> terminating"


def test_many_words_at_one_position_are_a_variable() -> None:
    tpl = LogTemplater(None, sibling_merge=4)
    users = ["root", "admin", "oracle", "guest", "test", "postgres"]
    ids = [tpl.add(f"Invalid user {u} from 10.0.0.{i} port 22").template_id for i, u in enumerate(users)]
    assert len({tpl._scope("").resolve(t) for t in ids}) == 1
    assert tpl.add("Invalid user nobody from 10.0.0.9 port 22").template_id == ids[0]
    [info] = tpl.templates()
    assert info.count == 7
    assert info.template == "Invalid user <*> from <*> port <*>"


def test_scopes_have_their_own_ids() -> None:
    tpl = LogTemplater(None)
    a = tpl.add("disk full on /dev/sda1", scope="es")
    b = tpl.add("disk full on /dev/sda1", scope="jenkins")
    assert a.template_id.startswith("es/")
    assert b.template_id.startswith("jenkins/")


LINES = [
    "Starting job shop-build #12",
    "Finished job shop-build #12 in 31 s",
    "Starting job shop-deploy #3",
    "Connection refused to 10.0.0.4:5432",
    "Finished job shop-deploy #3 in 5 s",
]


def test_ids_survive_a_restart(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    tpl = LogTemplater(store, key="templates/test")
    before = [tpl.add(line, scope="ci").template_id for line in LINES]
    tpl.save()
    restarted = LogTemplater(Store(f"sqlite:///{tmp_path / 'state.db'}"), key="templates/test")
    after = [restarted.add(line, scope="ci") for line in LINES]
    assert [m.template_id for m in after] == before
    assert not any(m.is_new for m in after)
    assert restarted.add("Connection refused to 10.9.9.9:80", scope="ci").template_id == before[3]
    new = restarted.add("Disk quota exceeded", scope="ci")
    assert new.is_new
    assert new.template_id not in before


def test_snapshot_restore_round_trip() -> None:
    tpl = LogTemplater(None)
    ids = [tpl.add(line).template_id for line in LINES]
    other = LogTemplater(None)
    other.restore(tpl.snapshot())
    assert [other.add(line).template_id for line in LINES] == ids
    assert {i.template_id: i.count for i in other.templates()} == {
        t: 2 * n for t, n in {i.template_id: i.count for i in tpl.templates()}.items()}


def test_concurrent_adds_agree() -> None:
    tpl = LogTemplater(None)
    results: list[list[str]] = []

    def work() -> None:
        results.append([tpl.add(line).template_id for line in LINES * 20])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert sum(i.count for i in tpl.templates()) == 4 * 20 * len(LINES)


def test_restore_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a templater snapshot"):
        LogTemplater(None).restore(b"nope")


def test_drain3_persistence_handler_writes_to_the_store(tmp_path: Path) -> None:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    from opsradar.detectors.templates import StorePersistence

    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    miner = TemplateMiner(StorePersistence(store, "drain3/raw"), TemplateMinerConfig())
    first = miner.add_log_message("user ana logged in")["cluster_id"]
    assert store.load_checkpoint("drain3/raw") is not None
    again = TemplateMiner(StorePersistence(store, "drain3/raw"), TemplateMinerConfig())
    assert again.match("user ana logged in").cluster_id == first
