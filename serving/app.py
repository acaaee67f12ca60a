"""The Ray Serve application: one FastAPI ingress, detector shards, one owner of incident state,
and the collectors.

Deployments (each a thin host around plain classes):

- ``Ingress`` (FastAPI, :func:`opsradar.serving.api.create_app`): authenticates, validates, stores
  pushed events (concurrent ingests share one transaction: :class:`~opsradar.serving.storewriter.StoreWriter`),
  sends each to the detector shard that owns its stream, answers, and hands events
  and anomalies to the ``Owner`` in order through a bounded queue
  (:class:`~opsradar.serving.ownerfeed.OwnerFeed`; a full queue makes ingests wait, then 503).
  Handles to the other deployments are injected through its constructor.
- ``DetectorShard-<i>`` (one replica each): owns the streams whose key hashes to ``i``
  (:func:`opsradar.detectors.engine.shard_of`); restores its state from its checkpoint in the store
  on start, checkpoints every ``detectors.checkpoint_interval`` and at shutdown.
- ``Owner`` (one replica): the :class:`~opsradar.serving.pipeline.Pipeline` (rules, correlation,
  notification), the outbox worker and the rules file watch.
- ``Collectors`` (one replica): the :class:`~opsradar.collectors.scheduler.Scheduler`, whose new
  events take the same path as pushed ones.

``build_app(args)`` is the application builder: ``serve run opsradar.serving.app:build_app
config_path=opsradar.yaml`` or the ``import_path`` of ``deploy/serve_config.yaml``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import pickle
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import msgspec
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from opsradar.config import Config, load_config
from opsradar.detectors.engine import DetectionEngine, shard_of
from opsradar.models import Anomaly, Event, events_from_plain, events_to_plain, json_native
from opsradar.serving import metrics as _metrics  # a module: Ray pickles it by name, not the metric objects
from opsradar.serving.operations import Unavailable, backtest_document
from opsradar.serving.ownerfeed import OwnerFeed
from opsradar.serving.storewriter import StoreWriter
from opsradar.store import Store

__all__ = ["AppArgs", "build_app"]

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """Arguments of the application builder (``serve run … key=value`` or the serve config)."""

    config_path: str | None = Field(default=None, description="opsradar config file; default: embedded defaults")
    shards: int | None = Field(default=None, ge=1, le=256, description="overrides detectors.shards")
    collect: bool = Field(default=True, description="run the collectors on their schedules")
    notify: bool = Field(default=True, description="deliver Slack notifications")
    pyod: bool = Field(default=True, description="feed the PyOD group models and refit them as Ray tasks")


def _config(args: AppArgs) -> Config:
    return load_config(args.config_path)


def _setup_logging() -> None:
    from opsradar.logs import setup_logging

    setup_logging()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16, health_check_period_s=5)
class DetectorShard:
    """Owns the detector state of one shard of streams (:class:`~opsradar.serving.shardstate.ShardState`).

    On start it restores its checkpoint and replays, from the store, the events of its streams
    ingested since; what the replay found goes to the ``Owner`` (which ignores what it has seen).
    """

    def __init__(self, shard: int, shards: int, owner: DeploymentHandle | None, args: dict[str, Any]) -> None:
        _setup_logging()
        import ray

        from opsradar.serving.refits import ShardRefits, refit_job, warm_refit_worker
        from opsradar.serving.shardstate import ShardState

        self.args = AppArgs.model_validate(args)
        cfg = _config(self.args)
        self.store = Store(cfg.store.resolved_url())
        window = cfg.detectors.refit_window
        self.refits = (ShardRefits(self.store, window=window, refit_every=max(64, window // 4),
                                   min_interval=cfg.detectors.refit_interval.total_seconds())
                       if self.args.pyod else None)
        self._refit_task = ray.remote(num_cpus=1, max_retries=1)(refit_job)
        # a refit worker imports and runs the fit path now, while the application is idle (not awaited)
        self._warmed = (ray.remote(num_cpus=1, max_retries=0)(warm_refit_worker).remote(self.refits.spec())
                        if self.refits is not None else None)
        self._refits_running: dict[Any, str] = {}  # ObjectRef -> group
        self.state = ShardState(shard, shards, self.store, cfg.detectors, cfg.entities, refits=self.refits)
        self.shard, self.owner = shard, owner
        self._label = str(shard)
        _metrics.setup_gc(f"shard-{shard}")
        for family in (_metrics.DETECT_EVENTS, _metrics.DETECT_SECONDS, _metrics.CHECKPOINTS, _metrics.STREAMS):
            family.labels(shard=self._label)  # exported from the start, at zero
        _metrics.REPLAYED.labels(shard=self._label).inc(self.state.replayed)
        self.interval = cfg.detectors.checkpoint_interval.total_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._checkpoint_loop, daemon=True, name="shard-checkpoint")
        self._thread.start()

    async def detect(self, events: bytes | list[Event] | list[dict[str, Any]]) -> list[Anomaly]:
        """Anomalies of ``events``: models from the ingress (a :func:`pack` blob, trusted without
        re-validation), or documents, which are validated."""
        t = time.perf_counter()
        events = unpack(events)
        out = self.state.detect_events(events)
        _metrics.DETECT_SECONDS.labels(shard=self._label).observe(time.perf_counter() - t)
        _metrics.DETECT_EVENTS.labels(shard=self._label).inc(len(events))
        return out

    def metrics_text(self) -> bytes:
        from prometheus_client import REGISTRY, generate_latest

        _metrics.STREAMS.labels(shard=self._label).set(self.state.engine.streams)
        return generate_latest(REGISTRY)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Live settings (``user_config``): ``checkpoint_interval_s``, ``log_level``."""
        if "checkpoint_interval_s" in user_config:
            self.interval = max(0.1, float(user_config["checkpoint_interval_s"]))
        _set_log_level(user_config)

    def checkpoint(self) -> int:
        streams = self.state.checkpoint()
        _metrics.CHECKPOINTS.labels(shard=self._label).inc()
        return streams

    def stats(self) -> dict[str, Any]:
        st = self.state
        return {"shard": self.shard, "streams": st.engine.streams, "replayed": st.replayed,
                "restored_from": st.restored_from.isoformat() if st.restored_from else None}

    def stream_counts(self) -> dict[str, int]:
        """Events learned per stream (what a restore must preserve)."""
        with self.state.lock:
            engine = self.state.engine
            streams = [engine.stream(k) for k in engine.keys()]  # noqa: SIM118 - a method, not a dict
            return {s.key: s.n for s in streams if s is not None}

    def _forward_replay(self) -> None:
        events, anomalies = self.state.take_replay()
        if not events or self.owner is None:
            return
        self.owner.handle.remote([e.model_dump(mode="json") for e in events],
                                 [a.model_dump(mode="json") for a in anomalies]).result(timeout_s=600)

    def _refit_round(self) -> None:
        """Start the refits that are due as Ray tasks; hot-swap the champions of those that finished
        (and any a promote or rollback changed)."""
        import ray

        if self.refits is None:
            return
        for group, rows in self.refits.take_due():
            ref = self._refit_task.remote(self.store.url, group, rows, self.refits.spec())
            self._refits_running[ref] = group
        finished: list[Any] = []
        if self._refits_running:
            finished, _ = ray.wait(list(self._refits_running), num_returns=len(self._refits_running), timeout=0)
        for ref in finished:
            group = self._refits_running.pop(ref)
            try:
                decision = ray.get(ref)
                log.info("detector shard %d: refit of %s: %s", self.shard, group, decision)
            except Exception:
                log.exception("detector shard %d: refit of %s failed; the current model stays", self.shard, group)
            finally:
                self.refits.finished(group)
        swapped = self.refits.sync()
        if swapped:
            log.info("detector shard %d: hot-swapped the models of %s", self.shard, ", ".join(swapped))

    def models(self) -> dict[str, Any]:
        """The PyOD group models this shard holds and their model versions."""
        return {"refits": self.refits.refits, "versions": self.refits.versions()} if self.refits else {}

    def _checkpoint_loop(self) -> None:
        pending = True  # the replay's results, until the owner took them
        last_checkpoint = time.monotonic()
        while not self._stop.wait(0.2 if pending else 1.0):
            try:
                if pending:
                    self._forward_replay()
                    pending = False
                self._refit_round()
                if self.state.dirty and time.monotonic() - last_checkpoint >= self.interval:
                    self.state.checkpoint()
                    last_checkpoint = time.monotonic()
                    _metrics.CHECKPOINTS.labels(shard=self._label).inc()
            except Exception:
                log.exception("detector shard %d: checkpoint, refit or replay forwarding failed; will retry",
                              self.shard)

    def __del__(self) -> None:
        self._stop.set()
        try:
            self.state.checkpoint()
        except Exception:  # noqa: BLE001 - best effort at shutdown; the periodic checkpoint stands
            log.warning("detector shard %d: final checkpoint failed", self.shard)

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("checkpoint thread died")


def pack(items: Sequence[Event] | Sequence[Anomaly]) -> bytes:
    """Models as one blob for a call between deployments (:func:`unpack` reads it).

    Ray's own serializer walks a list argument object by object in Python (cloudpickle's dispatch,
    msgpack's hooks): for batches of events that was the ingress's largest cost after validation.
    The C pickler does the same in one call (``Event`` pickles as a plain tuple).
    """
    return pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)


_EVENTS_BLOB = "opsradar.events/1"
_EVENTS_MSGPACK = b"OREM"  # a msgpack events blob starts so (a pickle starts with b"\\x80")
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_MSGPACK_DECODER = msgspec.msgpack.Decoder()


def pack_events(events: Sequence[Event]) -> bytes:
    """Events as one blob, in plain containers (:func:`~opsradar.models.events_to_plain`).

    When every event's time is in UTC and its attrs are :func:`~opsradar.models.json_native` (all
    pushed events), the blob is msgpack: about ten times cheaper to write than a pickle and as cheap
    to read, with equal events back. Otherwise it is a pickle, which keeps any attrs' types. Both
    are about twice as fast both ways as :func:`pack` of the same events. :func:`unpack` reads all.
    """
    items = list(events)
    states, partial = events_to_plain(items)
    utc = UTC
    if all(d["ts"].tzinfo is utc and (not d["attrs"] or json_native(d["attrs"])) for d in states):
        return _EVENTS_MSGPACK + _MSGPACK_ENCODER.encode((states, [[i, sorted(f)] for i, f in partial.items()]))
    return pickle.dumps((_EVENTS_BLOB, (states, partial)), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(payload: bytes | Sequence[Any]) -> list[Any]:
    """The list a :func:`pack` or :func:`pack_events` blob holds, or the events of a list of
    :func:`pack_events` blobs, concatenated; a list of models or documents is returned as it is."""
    if isinstance(payload, bytes | bytearray | memoryview):
        if payload[:4] == _EVENTS_MSGPACK:
            states, partial = _MSGPACK_DECODER.decode(memoryview(payload)[4:])
            return events_from_plain((states, {i: frozenset(f) for i, f in partial}))
        obj = pickle.loads(payload)  # noqa: S301 - our own deployments' blob
        if type(obj) is tuple and len(obj) == 2 and obj[0] == _EVENTS_BLOB:
            return events_from_plain(obj[1])
        return obj  # type: ignore[no-any-return]
    items = list(payload)
    if items and all(isinstance(p, bytes | bytearray | memoryview) for p in items):
        return [x for p in items for x in unpack(p)]
    return items


def _set_log_level(user_config: dict[str, Any]) -> None:
    level = user_config.get("log_level")
    if level:
        logging.getLogger("opsradar").setLevel(str(level).upper())


class _Seen:
    """A bounded set of recently seen ids (the owner ignores events and anomalies sent twice).

    After each call it holds at most ``cap`` ids, the newest: past ``cap``, the oldest are
    forgotten down to nine tenths of it, so that trims are rare."""

    def __init__(self, cap: int = 500_000) -> None:
        self.cap = cap
        self._ids: dict[str, None] = {}  # insertion-ordered

    def fresh(self, keys: Iterable[str]) -> list[bool]:
        """For each key, whether it was not seen before (keys are then seen, a repeat within
        ``keys`` included)."""
        ids = self._ids
        out = []
        for k in keys:
            if k in ids:
                out.append(False)
            else:
                ids[k] = None
                out.append(True)
        if len(ids) > self.cap:
            for k in list(itertools.islice(ids, len(ids) - self.cap + self.cap // 10)):
                del ids[k]
        return out


def _id_of(item: Event | Anomaly | dict[str, Any]) -> str:
    return str(item.get("id")) if isinstance(item, dict) else item.id


class _RemoteDetectors:
    """Stands in for LocalDetectors inside the Owner when detection happens in the shards."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.streams = 0

    def detect(self, events: Sequence[Event]) -> list[Anomaly]:
        raise RuntimeError("detection runs in the detector shards")

    def checkpoint(self) -> None:
        return None


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class Owner:
    """The single owner of rules, incidents and notifications."""

    def __init__(self, args: dict[str, Any]) -> None:
        _setup_logging()
        from opsradar.serving.pipeline import Pipeline
        from opsradar.serving.runtime import interaction_handler, slack_worker

        self.args = AppArgs.model_validate(args)
        cfg = _config(self.args)
        self.cfg = cfg
        _metrics.setup_gc("owner")
        self.store = Store(cfg.store.resolved_url())
        self.pipeline = Pipeline(cfg, self.store, detectors=_RemoteDetectors(cfg.detectors.shards),  # type: ignore[arg-type]
                                 worker=slack_worker(cfg, self.store) if self.args.notify else None,
                                 notify=self.args.notify, rank_async=True)  # ranking off handle()'s path
        self.pipeline.interaction_handler = interaction_handler(cfg, self.pipeline)
        self._events, self._anomalies = _Seen(), _Seen()
        self.outbox_interval = 1.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True, name="owner-loop")]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.outbox_interval):
            try:
                self.pipeline.rules.reload_if_changed()
                self.pipeline.remind()  # every REMIND_CHECK_EVERY
                self.pipeline.prune()  # every PRUNE_EVERY
                if self.pipeline.worker is not None:
                    self.pipeline.worker.drain_once()
            except Exception:
                log.exception("owner background loop")

    def handle(self, events: bytes | list[bytes] | list[Event] | list[dict[str, Any]],
               anomalies: bytes | list[Anomaly] | list[dict[str, Any]]) -> dict[str, Any]:
        """Rules, correlation and notification; events and anomalies already handled are ignored
        (a shard's replay after a restart may send some again). Models (from the ingress and the
        shards, or blobs of them: :func:`unpack`) are trusted as they are; documents are validated."""
        before = self.pipeline.stats.alerts
        items, found = unpack(events), unpack(anomalies)
        evs = [e if isinstance(e, Event) else Event.model_validate(e)
               for e, new in zip(items, self._events.fresh(map(_id_of, items)), strict=True) if new]
        anoms = [a if isinstance(a, Anomaly) else Anomaly.model_validate(a)
                 for a, new in zip(found, self._anomalies.fresh(map(_id_of, found)), strict=True) if new]
        if evs or anoms:
            self.pipeline.handle(evs, anoms)
        return {"alerts": self.pipeline.stats.alerts - before}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Live settings (``user_config``): ``outbox_interval_s`` (outbox and rules-watch pace), ``log_level``."""
        if "outbox_interval_s" in user_config:
            self.outbox_interval = max(0.05, float(user_config["outbox_interval_s"]))
        _set_log_level(user_config)

    def call(self, method: str, *args: Any) -> Any:
        allowed = {"incident_action", "feedback", "list_silences", "add_silence", "expire_silence", "rules_status", "reload_rules",
                   "list_models", "model_action", "sources", "slack_interaction", "ready", "metrics_text"}
        if method not in allowed:
            raise ValueError(f"unknown operation {method!r}")
        return getattr(self.pipeline, method)(*args)

    def drain(self, release_held: bool = False) -> int:
        """Deliver what is due in the outbox (``release_held``: and the first messages waiting out
        their ``group_wait``, as a clean shutdown does); returns how many were delivered."""
        return self.pipeline.drain_outbox(release_held=release_held)

    def __del__(self) -> None:
        self._stop.set()
        self.pipeline.close()  # pending rankings are dropped, not waited for


#: Events an ingress may have queued for the owner before ingests wait (then 503) for it to catch up:
#: a few seconds of the owner's work, so alerts and Slack lag the answer by no more than that.
OWNER_BACKLOG = 5_000

#: How long an ingest waits for a detector shard that is restarting before it gives up (the events
#: are stored either way; the restarted shard replays them from the store).
SHARD_RETRY_S = 90.0


async def _detect(shard: DeploymentHandle, blob: bytes, retry_s: float) -> list[Anomaly]:
    """``shard.detect(blob)`` (a :func:`pack_events` blob), retried while the shard's replica is dead
    or restarting."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        try:
            return await shard.detect.remote(blob)  # type: ignore[no-any-return]
        except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
            if time.monotonic() > deadline:
                raise ShardUnavailable(f"detector shard unavailable for {retry_s:.0f}s: {exc}") from exc
            log.warning("detector shard unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class ShardUnavailable(Unavailable):  # type: ignore[misc]
    """A detector shard did not come back in time (the events are stored; its replay will see them)."""


@functools.lru_cache(maxsize=65_536)
def _shard_of_stream(key: str, n: int) -> int:
    """:func:`shard_of`, memoised: a batch holds many events of few streams."""
    return shard_of(key, n)


def _by_shard(events: list[Event], n: int) -> dict[int, list[Event]]:
    """``events`` by the shard that owns their stream, in order within each shard."""
    if n == 1:
        return {0: events} if events else {}
    key_of = DetectionEngine.stream_key
    groups: dict[int, list[Event]] = {}
    for e in events:
        i = _shard_of_stream(key_of(e), n)
        part = groups.get(i)
        if part is None:
            groups[i] = [e]
        else:
            part.append(e)
    return groups


async def route_events(events: Sequence[Event], shards: Sequence[DeploymentHandle], owner: DeploymentHandle,
                       *, retry_s: float = SHARD_RETRY_S, feed: OwnerFeed | None = None) -> dict[str, Any]:
    """Detection on each event's shard (concurrently), then rules and correlation on the owner:
    awaited, or queued on ``feed`` (then ``alerts`` is ``None``: not known yet).

    Each shard's part is packed once; the owner gets the same blobs (its pipeline orders a call's
    events by time itself)."""
    # models, not documents: they are not validated again (they were validated at the edge)
    docs = list(events)
    groups = _by_shard(docs, len(shards))
    blobs = {i: pack_events(part) for i, part in groups.items()}
    results = await asyncio.gather(*(_detect(shards[i], blob, retry_s) for i, blob in blobs.items()))
    anomalies = [a for r in results for a in r]
    if feed is not None:  # handed to the owner in order, after this returns
        feed.put(list(blobs.values()), anomalies, events_count=len(docs))
        return {"anomalies": len(anomalies), "alerts": None}
    done = await owner.handle.remote(list(blobs.values()), pack(anomalies))
    return {"anomalies": len(anomalies), "alerts": done["alerts"]}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Collectors:
    """Runs the configured collectors on their schedules; each round's new events, from all sources,
    go to the shards and the owner in event-time order."""

    def __init__(self, shards: list[DeploymentHandle], owner: DeploymentHandle, args: dict[str, Any]) -> None:
        _setup_logging()
        from opsradar.collectors.registry import build_collectors
        from opsradar.collectors.scheduler import Scheduler

        self.args = AppArgs.model_validate(args)
        cfg = _config(self.args)
        self.store = Store(cfg.store.resolved_url())
        self.shards, self.owner = shards, owner
        self._pending: list[Event] = []
        self._round = threading.Lock()
        self.scheduler = Scheduler(self.store, on_events=lambda _name, evs: self._pending.extend(evs))
        for c in build_collectors(cfg):
            self.scheduler.add(c, interval=cfg.sources[c.name].interval)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="collectors-loop").start()
        self._stop = threading.Event()
        if self.args.collect:
            threading.Thread(target=self._schedule, daemon=True, name="collectors-schedule").start()

    def _schedule(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._run_round(force=False)
            except Exception:
                log.exception("collector round failed")

    def _run_round(self, *, force: bool) -> dict[str, Any]:
        with self._round:
            results = self.scheduler.run_due(force=force)
            events, self._pending = sorted(self._pending, key=lambda e: (e.ts, e.id)), []
            if events:
                fut = asyncio.run_coroutine_threadsafe(route_events(events, self.shards, self.owner), self.loop)
                fut.result(timeout=600)
        return {name: {"new": getattr(res, "new", 0), "error": str(res) if isinstance(res, Exception) else None}
                for name, res in results.items()}

    def collect_now(self) -> dict[str, Any]:
        """Poll every source now (the demo drives simulated time with this)."""
        return self._run_round(force=True)

    def health(self) -> dict[str, Any]:
        return {name: h.as_dict() for name, h in self.scheduler.health().items()}

    def __del__(self) -> None:
        self._stop.set()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
@serve.ingress()
class Ingress:
    """The HTTP API. Owned-state operations go to the ``Owner``; reads go to the store."""

    def __init__(self, shards: list[DeploymentHandle], owner: DeploymentHandle,
                 collectors: DeploymentHandle | None, args: dict[str, Any]) -> None:
        _setup_logging()
        from opsradar.serving.auth import TokenAuth

        self.args = AppArgs.model_validate(args)
        self.cfg = _config(self.args)
        self.store = Store(self.cfg.store.resolved_url())
        self.shards, self.owner, self.collectors = shards, owner, collectors
        self.auth = TokenAuth.from_config(self.cfg.api)
        _metrics.setup_gc("ingress")
        for outcome in ("stored", "duplicate", "rejected"):
            _metrics.INGEST_EVENTS.labels(outcome=outcome)
        self.started = time.monotonic()
        self.feed = OwnerFeed(lambda blobs, anoms: owner.handle.remote(blobs, pack(anoms)), max_backlog=OWNER_BACKLOG)
        self.writer: StoreWriter[Event] = StoreWriter(self.store.add_events, key=attrgetter("id"),
                                                      on_commit=lambda _n: _metrics.INGEST_TRANSACTIONS.inc())
        import ray

        # a backtest replays up to a month of history: a Ray task, not the ingress's own CPU and GIL
        self._backtest_task = ray.remote(num_cpus=1, max_retries=0)(backtest_document)

    def __serve_build_asgi_app__(self) -> Any:
        from opsradar.serving.api import create_app

        api = self.cfg.api
        return create_app(self, self.store, self.auth, graph=self.cfg.entities, max_body_bytes=api.max_body_bytes,
                          max_batch_items=api.max_batch_items, max_clock_skew=api.max_clock_skew,
                          public_url=api.public_url, config=self.cfg)

    # -- the Operations protocol (serving/operations.py) --
    async def ingest(self, events: list[Event]) -> dict[str, Any]:
        await self.feed.admit()  # back-pressure before anything is stored
        new = await self.writer.add(events)
        _metrics.INGEST_EVENTS.labels(outcome="stored").inc(len(new))
        _metrics.INGEST_EVENTS.labels(outcome="duplicate").inc(len(events) - len(new))
        summary = (await route_events(new, self.shards, self.owner, feed=self.feed) if new
                   else {"anomalies": 0, "alerts": None})
        return {"stored": len(new), "duplicates": len(events) - len(new), **summary}

    async def _call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return await self.owner.call.remote(method, *args)
        except RayTaskError as exc:
            # the request's fault (the API answers 4xx with the message): the owner's own exception,
            # not Ray's wrapper, whose text is the remote traceback (pids, addresses, paths)
            if isinstance(exc.cause, ValueError | LookupError):
                raise exc.cause from None
            raise

    async def backtest(self, texts: dict[str, str], since: datetime, until: datetime) -> dict[str, Any]:
        from ray.exceptions import OutOfMemoryError, TaskUnschedulableError, WorkerCrashedError

        try:
            return await self._backtest_task.remote(self.store.url, texts, since, until, self.cfg)  # type: ignore[no-any-return]
        except (OutOfMemoryError, WorkerCrashedError, TaskUnschedulableError) as exc:  # not the request's fault
            raise Unavailable(f"the backtest's Ray worker failed ({type(exc).__name__})") from exc

    async def incident_action(self, incident_id: str, action: str, actor: str) -> dict[str, Any]:
        return await self._call("incident_action", incident_id, action, actor)  # type: ignore[no-any-return]

    async def feedback(self, incident_id: str, verdict: str, actor: str, reason: str) -> dict[str, Any]:
        return await self._call("feedback", incident_id, verdict, actor, reason)  # type: ignore[no-any-return]

    async def list_silences(self) -> list[dict[str, Any]]:
        return await self._call("list_silences")  # type: ignore[no-any-return]

    async def add_silence(self, spec: dict[str, Any], actor: str) -> dict[str, Any]:
        return await self._call("add_silence", spec, actor)  # type: ignore[no-any-return]

    async def expire_silence(self, silence_id: str, actor: str) -> dict[str, Any]:
        return await self._call("expire_silence", silence_id, actor)  # type: ignore[no-any-return]

    async def rules_status(self) -> dict[str, Any]:
        return await self._call("rules_status")  # type: ignore[no-any-return]

    async def reload_rules(self, actor: str) -> dict[str, Any]:
        return await self._call("reload_rules", actor)  # type: ignore[no-any-return]

    async def list_models(self) -> list[dict[str, Any]]:
        return await self._call("list_models")  # type: ignore[no-any-return]

    async def model_action(self, model_id: str, action: str, actor: str) -> dict[str, Any]:
        return await self._call("model_action", model_id, action, actor)  # type: ignore[no-any-return]

    async def sources(self) -> dict[str, Any]:
        if self.collectors is not None:
            return {"sources": await self.collectors.health.remote()}
        return {"sources": self.store.source_health()}

    async def slack_interaction(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, payload = await self._call("slack_interaction", body, headers)
        return int(status), payload

    async def ready(self) -> dict[str, Any]:
        try:
            owner = await self._call("ready")
            shards = await asyncio.gather(*(s.stats.remote() for s in self.shards))
        except Exception as exc:  # noqa: BLE001 - not ready yet: say why
            return {"ready": False, "reason": f"{type(exc).__name__}: {exc}"}
        return {**owner, "ready": bool(owner.get("ready")), "shards": shards, **self.feed.stats()}

    async def metrics_text(self) -> bytes:
        from prometheus_client import REGISTRY, generate_latest

        from opsradar.serving.metrics import merge_exposition

        parts = await asyncio.gather(self._call("metrics_text"), *(s.metrics_text.remote() for s in self.shards),
                                     return_exceptions=True)
        texts = [bytes(p) for p in parts if isinstance(p, bytes | bytearray)]
        return merge_exposition([generate_latest(REGISTRY), *texts])


def build_app(args: dict[str, Any] | AppArgs | None = None) -> Any:
    """The application builder (pydantic-typed arguments)."""
    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    cfg = _config(parsed)
    n = parsed.shards or cfg.detectors.shards
    plain = parsed.model_dump()
    owner = Owner.bind(plain)  # type: ignore[attr-defined]
    shards = [DetectorShard.options(name=f"DetectorShard-{i}").bind(i, n, owner, plain)  # type: ignore[attr-defined]
              for i in range(n)]
    # always present (idle without sources), so the deployments are the same for every config
    collectors = Collectors.bind(shards, owner, plain)  # type: ignore[attr-defined]
    return Ingress.bind(shards, owner, collectors, plain)  # type: ignore[attr-defined]
