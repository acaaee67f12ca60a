"""The state of one detector shard, without Ray: detection, checkpoints with a high-water mark, and
recovery by replaying the store.

A checkpoint holds the engine's snapshot, the wall-clock time it was taken (its *high-water mark*)
and the ids of the events the shard processed during the ``margin`` before it. On restore, the
shard loads the snapshot, then replays from the store every event of its own streams that was
*ingested* at or after ``hwm - margin`` and is not among those ids, in event-time order. So the
only state lost is that of events which were stored more than ``margin`` before the checkpoint and
still not detected when it was taken (an ingest slower than ``margin`` between its store commit
and its detector call); with the default margin of one minute that does not happen in practice.

Known limits: the replay selects by ``events.ingested_at``, which has no index (a scan of the events
table at each restart; fine for days of retention on SQLite, worth an index on PostgreSQL at
scale). Changing ``detectors.shards`` moves streams between shards: a moved stream starts cold on
its new shard (its state stays in the old shard's checkpoint, which is not merged).

Detection is idempotent over a window: an event id the shard has already processed (live or in the
replay) is skipped, so an ingest retried after a replica restart does not learn an event twice.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.config import DetectorsConfig
>>> from opsradar.models import Event
>>> store = Store("sqlite://")
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> evs = [Event.new(source="jenkins", native_id=f"b{i}", kind="build", ts=t0 + timedelta(hours=i),
...                  entity="job:shop", values={"duration_s": 300.0}) for i in range(10)]
>>> shard = ShardState(0, 1, store, DetectorsConfig(warmup=5))
>>> _ = store.add_events(evs[:6]); shard.detect([e.model_dump(mode="json") for e in evs[:6]])
[]
>>> shard.checkpoint()
1
>>> _ = store.add_events(evs[6:])           # stored, but the shard died before detecting them
>>> again = ShardState(0, 1, store, DetectorsConfig(warmup=5))
>>> again.replayed, again.engine.stream("jenkins|build|job:shop").n
(4, 10)
>>> again.detect([e.model_dump(mode="json") for e in evs[6:]])   # a retried ingest: already done
[]
"""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from opsradar import schema as t
from opsradar.config import DetectorsConfig, EntityGraph
from opsradar.detectors.engine import DetectionEngine, shard_of
from opsradar.models import Anomaly, Event
from opsradar.serving.refits import ShardRefits
from opsradar.store import Store

__all__ = ["CHECKPOINT_FORMAT", "ShardState", "checkpoint_key"]

log = logging.getLogger(__name__)

#: ``checkpoints.version`` of the format written here (engine snapshot + high-water mark + recent ids).
CHECKPOINT_FORMAT = "shard-2"


def checkpoint_key(shard: int) -> str:
    """The store key of shard ``shard``'s checkpoint (the same key as the in-process pipeline's)."""
    return f"detectors/shard-{shard}"


class ShardState:
    """One shard: its engine, its processed-id window, its checkpoint and its replay."""

    def __init__(self, shard: int, shards: int, store: Store, config: DetectorsConfig,
                 graph: EntityGraph | None = None, *, margin: timedelta = timedelta(minutes=1),
                 clock: Callable[[], float] = time.time, refits: ShardRefits | None = None) -> None:
        self.shard, self.shards, self.store = shard, shards, store
        # the group models learn every event the engine scores, and judge the events of cold streams
        # against their group's champion (see opsradar.detectors.engine)
        self.engine = DetectionEngine(config, graph, groups=refits)
        self.refits = refits
        self.margin = margin.total_seconds()
        self.clock = clock
        self.key = checkpoint_key(shard)
        self.lock = threading.RLock()
        self.dirty = False
        self.seen: dict[str, float] = {}  # event id -> when this shard processed it (wall clock)
        self.replayed = 0
        self.replay_events: list[Event] = []
        self.replay_anomalies: list[Anomaly] = []
        self.restored_from: datetime | None = None
        self._restore_and_replay()

    # ------------------------------------------------------------------ detection
    def owns(self, event: Event) -> bool:
        return shard_of(DetectionEngine.stream_key(event), self.shards) == self.shard

    def detect(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Detect on event documents (already stored); returns anomaly documents. Ids seen are skipped."""
        return [a.model_dump(mode="json") for a in self.detect_events(docs)]

    def detect_events(self, events: list[Event] | list[dict[str, Any]]) -> list[Anomaly]:
        """:meth:`detect` on events (already stored), as models or documents; returns the anomalies.
        An :class:`Event` is trusted as is (it was validated at the ingress), a document is validated."""
        out: list[Anomaly] = []
        with self.lock:
            now = self.clock()
            for item in events:
                eid = item.id if isinstance(item, Event) else item.get("id")
                if isinstance(eid, str) and eid in self.seen:
                    continue
                e = item if isinstance(item, Event) else Event.model_validate(item)
                out += self.engine.process(e)
                self.seen[e.id] = now
            self.dirty = True
        return out

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> int:
        """Save the engine, the high-water mark and the recent ids; returns the number of streams."""
        with self.lock:
            now = self.clock()
            self._forget_before(now - self.margin)
            recent = list(self.seen)
            doc: dict[str, Any] = {"engine": self.engine.snapshot(), "hwm": now, "recent": recent}
            if self.refits is not None:
                with self.refits.lock:
                    doc["pyod"] = self.refits.models.snapshot()
            blob = pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)
            self.dirty = False
            streams = self.engine.streams
        self.store.save_checkpoint(self.key, blob, version=CHECKPOINT_FORMAT)
        return streams

    def _forget_before(self, cutoff: float) -> None:
        """Drop the ids processed before ``cutoff``. ``seen`` is in the order the ids were processed,
        so only its expired head is walked (a minute of ids at full load is a million)."""
        seen = self.seen
        expired = 0
        for at in seen.values():
            if at >= cutoff:
                break
            expired += 1
        if expired == len(seen):
            seen.clear()
        elif expired:
            for k in list(itertools.islice(seen, expired)):
                del seen[k]

    def _restore_and_replay(self) -> None:
        found = self.store.load_checkpoint(self.key)
        if found is None:
            # a first, empty checkpoint: a restart before the first periodic one replays from here
            self.checkpoint()
            return
        blob, version = found
        if version != CHECKPOINT_FORMAT:  # an engine snapshot alone (in-process pipeline): no replay
            self.engine.restore(blob)
            log.info("detector shard %d restored %d streams (no high-water mark)", self.shard, self.engine.streams)
            return
        try:
            doc = pickle.loads(blob)  # noqa: S301 - our own checkpoint
            self.engine.restore(doc["engine"])
            if self.refits is not None and doc.get("pyod"):
                self.refits.models.restore(doc["pyod"])
                self.refits.sync()
            hwm, recent = float(doc["hwm"]), set(doc["recent"])
        except Exception as exc:
            raise ValueError(f"checkpoint {self.key!r} is not a shard checkpoint: {exc}") from exc
        self.restored_from = datetime.fromtimestamp(hwm, UTC)
        now = self.clock()
        self.seen = dict.fromkeys(recent, hwm)
        since = datetime.fromtimestamp(hwm - self.margin, UTC)
        for e in self._stored_since(since):
            if e.id in recent or not self.owns(e):
                continue
            self.replay_events.append(e)
            self.replay_anomalies += self.engine.process(e)
            self.seen[e.id] = now
        self.replayed = len(self.replay_events)
        self.dirty = self.replayed > 0
        log.info("detector shard %d restored %d streams from its checkpoint of %s and replayed %d events",
                 self.shard, self.engine.streams, self.restored_from.isoformat(), self.replayed)

    def _stored_since(self, since: datetime) -> list[Event]:
        """Events ingested at or after ``since``, in event-time order (then by id).

        Sorted here, not by the query: with ``ORDER BY ts`` SQLite's planner walks the time index
        over the whole table, while the ``ingested_at`` index reads only the recent rows."""
        q = select(t.events.c.ts, t.events.c.id, t.events.c.doc).where(t.events.c.ingested_at >= since)
        with self.store.engine.connect() as conn:
            rows = sorted(conn.execute(q), key=lambda r: (r[0], r[1]))
        return [Event.model_validate(doc) for _, _, doc in rows]

    def take_replay(self) -> tuple[list[Event], list[Anomaly]]:
        """The replayed events and the anomalies found on them, once (for the incident owner)."""
        with self.lock:
            out = (self.replay_events, self.replay_anomalies)
            self.replay_events, self.replay_anomalies = [], []
        return out
