"""Log templates: Drain3 with generic masking, a constant-word guard and post-merging.

A log message becomes a *template id* (``labels["template_id"]`` on the event) and a template
text (``attrs``). One generic configuration serves every system; nothing here is keyed on one
system's vocabulary. Three stages surround Drain3's ``TemplateMiner``:

1. **Masking** (:func:`mask_message`): URLs, dates and times, UUIDs, MAC addresses, IPs and
   ``host:port``, domain names, Windows and Unix paths, hex, ``key=value`` values, quantities with
   units (``1190 bytes (1.16 KB)``), booleans and null, and finally any token part holding a digit.
   The masked values are the template's parameters.
2. **Constant-word guard** (:class:`GuardedDrain`): Drain merges a message into a cluster when
   enough tokens agree, so ``VM Started`` and ``VM Paused`` end up as ``VM <*>``. The guard refuses a
   cluster whose template has a different token where either side is a plain word (letters only):
   after masking, plain words are what stays constant in a template.
3. **Post-merge** (:func:`signature`): clusters whose templates differ only by variables (masks,
   digits, runs of adjacent variables such as ``<*> <*>`` against ``<*>``) share one id; and when at
   least ``sibling_merge`` templates differ only by the plain word at one position, that position
   is a variable after all (user names, for instance), and they share the id of the first of them.

Ids are stable: they are assigned once, in order (``t1``, ``t2``, …, prefixed by the scope), and
the whole state (Drain3's own snapshot plus the id maps and counts) is checkpointed in the store,
so a restarted templater gives known templates the same ids.

>>> tpl = LogTemplater(None)
>>> tpl.add("Accepted connection from 10.0.0.7:5432 in 12 ms").template
'Accepted connection from <*> in <*>'
>>> a = tpl.add("VM Started (Lifecycle Event) instance=4f1c")
>>> b = tpl.add("VM Paused (Lifecycle Event) instance=77aa")
>>> a.template_id != b.template_id, b.is_new, b.params
(True, True, ['77aa'])
>>> tpl.add("VM Paused (Lifecycle Event) instance=9e01").template_id == b.template_id
True
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drain3 import TemplateMiner
from drain3.drain import Drain, LogCluster
from drain3.persistence_handler import PersistenceHandler
from drain3.template_miner_config import TemplateMinerConfig

if TYPE_CHECKING:
    from opsradar.store import Store

__all__ = [
    "GENERIC_MASKS",
    "GuardedDrain",
    "LogTemplater",
    "StorePersistence",
    "TemplateInfo",
    "TemplateMatch",
    "mask_message",
    "signature",
]

log = logging.getLogger(__name__)

_UNIT = r"(?:[KMGTPE]i?B|[kmgt]b|bytes?|B|ms|us|ns|sec|secs|seconds?|s|min|mins|minutes?|h|hours?|%)"
_NUM = r"\d+(?:[.,]\d+)?"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"

#: The generic masks, applied in order: (regex, replacement). A replacement that keeps part of the
#: match (``key=``) uses a group reference; everything else becomes ``<NAME>``.
GENERIC_MASKS: tuple[tuple[str, str], ...] = (
    (r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+", "<URL>"),
    (rf"(?i)\b{_DAY},?\s+{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?\s+\d{{1,2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?"
     r"(?:\s+[A-Z]{2,5})?(?:\s+\d{4})?", "<TIME>"),
    (r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b", "<TIME>"),
    (r"(?<![\w:])(?:[0-9A-Fa-f]{2}[:-]){3,}[0-9A-Fa-f]{2}(?![\w:])", "<MAC>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<UUID>"),
    (r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])", "<IP>"),
    (r"(?<![^\s\[(\"'/@])(?:[a-z0-9-]+(?:\.[a-z0-9-]+)+:\d{1,5}|[A-Za-z][A-Za-z0-9-]*:\d{2,5})(?![\w.:])", "<HOST>"),
    (r"(?i)\b(?:[a-z0-9-]+\.)+(?:com|net|org|edu|gov|mil|int|io|info|biz|local|localdomain|lan|internal|[a-z]{2})"
     r"(?![\w.])", "<HOST>"),
    (r"\b[A-Za-z]:\\[^\s\"',;]*", "<PATH>"),
    (r"(?<![\w/.])(?:\.{1,2}|~)?(?:/[^\s/\"'\[\](),;]+)+/?", "<PATH>"),
    (r"\b0x[0-9a-fA-F]+\b", "<HEX>"),
    (r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b", "<HEX>"),
    (r"(\b[\w.\-]+)=(\"[^\"]*\"|'[^']*'|[^\s,;&)\]}]*)", r"\1=<V>"),
    (rf"(?<![\w.])[<>~+-]?{_NUM}\s*{_UNIT}?(?:\s*\(\s*{_NUM}\s*{_UNIT}\s*\))?(?![\w.])", "<NUM>"),
    (r"(?i)(?<![\w.])(?:true|false|null|none|nil)(?![\w.])", "<V>"),
    (r"[^\s()\[\]{},;=\"'<>]*\d[^\s()\[\]{},;=\"'<>]*", "<NUM>"),
)
_MASKS = tuple((re.compile(p), r) for p, r in GENERIC_MASKS)
_MASK_TOKEN = re.compile(r"<[A-Z*]+>")
_WORD = re.compile(r"^[^\w<]*[A-Za-z][A-Za-z_-]+[^\w>]*$")
_VAR = "<*>"


def _masker(params: list[str]) -> Callable[[re.Match[str], str], str]:
    def sub(m: re.Match[str], repl: str) -> str:
        if repl.startswith("\\1"):
            params.append(m.group(2))
            return m.group(1) + repl[2:]
        params.append(m.group(0))
        return repl

    return sub


def mask_message(text: str, params: list[str] | None = None) -> str:
    """``text`` with every generic mask applied; the masked values are appended to ``params``.

    >>> mask_message("GET /api/v2/users?id=42 from 10.1.2.3 took 1190 bytes (1.16 KB)")
    'GET <PATH> from <IP> took <NUM>'
    >>> mask_message("session 3f2b9c1e-0d4a-4b8e-9c11-2a5f6e7d8c90 user=ana ok=true")
    'session <UUID> user=<V> ok=<V>'
    """
    out: list[str] = [] if params is None else params
    sub = _masker(out)
    for rx, repl in _MASKS:
        text = rx.sub(lambda m, r=repl: sub(m, r), text)  # type: ignore[misc]
    return text


def _is_word(token: str) -> bool:
    return _WORD.match(token) is not None


class GuardedDrain(Drain):  # type: ignore[misc]
    """Drain that never turns a plain word into a wildcard (see the module docstring)."""

    def fast_match(self, cluster_ids: Sequence[int], tokens: list[str], sim_th: float,
                   include_params: bool) -> LogCluster | None:
        allowed = []
        for cid in cluster_ids:
            cluster = self.id_to_cluster.get(cid)
            if cluster is None:
                continue
            if any(a != b and a != self.param_str and (_is_word(a) or _is_word(b))
                   for a, b in zip(cluster.log_template_tokens, tokens, strict=True)):
                continue
            allowed.append(cid)
        return super().fast_match(allowed, tokens, sim_th, include_params)  # type: ignore[no-any-return]


def signature(tokens: Sequence[str]) -> str:
    """The grouping key of a template: masks and digit runs become ``<*>``, adjacent ones merge.

    >>> signature(["<IP>,<IP>", '"GET', "<PATH>", "HTTP/1.1\\"", "<NUM>", "<*>", "done"])
    '<*> "GET <*> HTTP/<*>.<*>" <*> done'
    """
    out: list[str] = []
    for tok in tokens:
        t = re.sub(r"\d+", _VAR, _MASK_TOKEN.sub(_VAR, tok))
        t = re.sub(r"(?:<\*>)+", _VAR, t)
        if not any(c.isalnum() for c in _MASK_TOKEN.sub("", t)):
            t = _VAR
        if t == _VAR and out and out[-1] == _VAR:
            continue
        out.append(t)
    return " ".join(out)


@dataclass(frozen=True)
class TemplateMatch:
    """The template a message belongs to."""

    template_id: str
    template: str
    is_new: bool
    #: The masked values (grouped by mask kind, in mask order), then the tokens under Drain's wildcards.
    params: list[str] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        """What a collector puts into ``event.labels``."""
        return {"template_id": self.template_id}

    def attrs(self) -> dict[str, Any]:
        """What a collector puts into ``event.attrs``."""
        return {"template": self.template, "template_params": list(self.params)}


@dataclass(frozen=True)
class TemplateInfo:
    """One known template, with how many messages it has matched."""

    template_id: str
    template: str
    count: int


class StorePersistence(PersistenceHandler):  # type: ignore[misc]
    """A Drain3 ``PersistenceHandler`` over :meth:`Store.save_checkpoint` (``store=None``: memory)."""

    def __init__(self, store: Store | None, key: str) -> None:
        self.store = store
        self.key = key
        self.state: bytes | None = None

    def save_state(self, state: bytes) -> None:
        self.state = bytes(state)
        if self.store is not None:
            self.store.save_checkpoint(self.key, self.state, version="drain3")

    def load_state(self) -> bytes | None:
        if self.store is not None:
            row = self.store.load_checkpoint(self.key)
            if row is not None:
                self.state = row[0]
        return self.state


class _Scope:
    """The miner and id maps of one scope."""

    def __init__(self, prefix: str, sim_th: float, depth: int, sibling_merge: int) -> None:
        cfg = TemplateMinerConfig()
        cfg.drain_sim_th = sim_th
        cfg.drain_depth = depth
        cfg.parametrize_numeric_tokens = True
        cfg.snapshot_compress_state = True
        self.miner = TemplateMiner(persistence_handler=None, config=cfg)
        self.miner.drain = GuardedDrain(sim_th=sim_th, depth=depth, param_str=_VAR, parametrize_numeric_tokens=True)
        self.prefix = prefix
        self.sibling_merge = sibling_merge
        self.next_id = 1
        self.last_cluster = 0
        self._sig_cache: dict[tuple[str, ...], str] = {}
        self.sig_ids: dict[str, str] = {}
        self.cluster_ids: dict[int, str] = {}
        self.aliases: dict[str, str] = {}
        self.holes: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}
        self.texts: dict[str, str] = {}

    def resolve(self, tid: str) -> str:
        while tid in self.aliases:
            tid = self.aliases[tid]
        return tid

    def _new_id(self) -> str:
        tid = f"{self.prefix}t{self.next_id}"
        self.next_id += 1
        return tid

    def _merge_siblings(self, sig: str) -> None:
        tokens = sig.split(" ")
        if self.sibling_merge <= 1 or len(tokens) < 3:
            return
        for i, tok in enumerate(tokens):
            if not _is_word(tok):
                continue
            hole = " ".join([*tokens[:i], "<?>", *tokens[i + 1 :]])
            members = self.holes.setdefault(hole, [])
            if sig not in members:
                members.append(sig)
            if len(members) >= self.sibling_merge:
                root = self.resolve(self.sig_ids[members[0]])
                for other in members[1:]:
                    tid = self.resolve(self.sig_ids[other])
                    if tid != root:
                        self.aliases[tid] = root
                self.texts[root] = " ".join([*tokens[:i], _VAR, *tokens[i + 1 :]])

    def add(self, message: str) -> TemplateMatch:
        params: list[str] = []
        masked = mask_message(message, params)
        cluster, _change = self.miner.drain.add_log_message(masked)
        self.last_cluster = int(cluster.cluster_id)
        tokens = cluster.log_template_tokens
        sig = self._sig_cache.get(tokens)
        if sig is None:
            if len(self._sig_cache) >= 10_000:
                self._sig_cache.clear()
            sig = self._sig_cache[tokens] = signature(tokens)
        is_new = False
        if sig not in self.sig_ids:
            previous = self.cluster_ids.get(cluster.cluster_id)
            if previous is None:
                previous = self._new_id()
                is_new = True
                self.texts[previous] = sig
            self.sig_ids[sig] = previous
            self._merge_siblings(sig)
        self.cluster_ids[cluster.cluster_id] = self.sig_ids[sig]
        tid = self.resolve(self.sig_ids[sig])
        self.counts[tid] = self.counts.get(tid, 0) + 1
        params += [m for t, m in zip(tokens, masked.split(), strict=False) if t == _VAR and not _MASK_TOKEN.fullmatch(m)]
        return TemplateMatch(template_id=tid, template=self.texts.get(tid, sig), is_new=is_new, params=params)

    def final_id(self, cluster_id: int) -> str:
        return self.resolve(self.cluster_ids[cluster_id])

    def templates(self) -> list[TemplateInfo]:
        counts: dict[str, int] = {}
        for tid, n in self.counts.items():
            root = self.resolve(tid)
            counts[root] = counts.get(root, 0) + n
        return sorted((TemplateInfo(t, self.texts.get(t, ""), n) for t, n in counts.items()),
                      key=lambda i: (-i.count, i.template_id))

    def to_doc(self) -> dict[str, Any]:
        handler = StorePersistence(None, "")
        self.miner.persistence_handler = handler
        try:
            self.miner.save_state("snapshot")
        finally:
            self.miner.persistence_handler = None
        assert handler.state is not None
        return {
            "drain": base64.b64encode(handler.state).decode("ascii"),
            "next_id": self.next_id,
            "sig_ids": self.sig_ids,
            "cluster_ids": {str(k): v for k, v in self.cluster_ids.items()},
            "aliases": self.aliases,
            "holes": self.holes,
            "counts": self.counts,
            "texts": self.texts,
        }

    def load_doc(self, doc: dict[str, Any]) -> None:
        handler = StorePersistence(None, "")
        handler.state = base64.b64decode(doc["drain"])
        self.miner.persistence_handler = handler
        try:
            self.miner.load_state()
        finally:
            self.miner.persistence_handler = None
        self.next_id = int(doc["next_id"])
        self.sig_ids = dict(doc["sig_ids"])
        self.cluster_ids = {int(k): v for k, v in doc["cluster_ids"].items()}
        self.aliases = dict(doc["aliases"])
        self.holes = {k: list(v) for k, v in doc["holes"].items()}
        self.counts = {k: int(v) for k, v in doc["counts"].items()}
        self.texts = dict(doc["texts"])


class LogTemplater:
    """Mines log templates per scope and keeps their ids stable across restarts.

    ``store``: where the state is checkpointed (``None``: memory only), under ``key`` plus
    ``/<scope>``. The state is saved when a new template appears, every ``save_every`` messages
    and on :meth:`save`; it is loaded lazily the first time a scope is used.
    """

    def __init__(
        self,
        store: Store | None,
        key: str = "templates",
        *,
        sim_th: float = 0.4,
        depth: int = 4,
        sibling_merge: int = 6,
        save_every: int = 1000,
    ) -> None:
        if not 0 < sim_th <= 1:
            raise ValueError(f"sim_th must be in (0, 1], got {sim_th!r}")
        if depth < 3:
            raise ValueError(f"depth must be at least 3, got {depth!r}")
        self.store = store
        self.key = key.rstrip("/")
        self.sim_th = sim_th
        self.depth = depth
        self.sibling_merge = sibling_merge
        self.save_every = save_every
        self._scopes: dict[str, _Scope] = {}
        self._unsaved: dict[str, int] = {}
        self._lock = threading.RLock()

    def _key(self, scope: str) -> str:
        return f"{self.key}/{scope}" if scope else self.key

    def _scope(self, scope: str) -> _Scope:
        s = self._scopes.get(scope)
        if s is None:
            s = _Scope(f"{scope}/" if scope else "", self.sim_th, self.depth, self.sibling_merge)
            if self.store is not None:
                row = self.store.load_checkpoint(self._key(scope))
                if row is not None:
                    s.load_doc(json.loads(row[0]))
            self._scopes[scope] = s
        return s

    def add(self, message: str, scope: str = "") -> TemplateMatch:
        """The template of ``message`` in ``scope``, learning from it. Thread-safe."""
        with self._lock:
            s = self._scope(scope)
            match = s.add(message)
            n = self._unsaved.get(scope, 0) + 1
            self._unsaved[scope] = n
            if self.store is not None and (match.is_new or n >= self.save_every):
                self.save(scope)
            return match

    def final_id(self, cluster_id: int, scope: str = "") -> str:
        """The current id of a Drain cluster (after any post-merge); for evaluation."""
        return self._scope(scope).final_id(cluster_id)

    def templates(self, scope: str = "") -> list[TemplateInfo]:
        """The known templates of ``scope``, most frequent first."""
        with self._lock:
            return self._scope(scope).templates()

    def snapshot(self) -> bytes:
        """The whole state (every scope), as bytes."""
        with self._lock:
            doc = {scope: s.to_doc() for scope, s in self._scopes.items()}
        return json.dumps({"v": 1, "scopes": doc}).encode()

    def restore(self, blob: bytes) -> None:
        """Replace the state with a :meth:`snapshot`."""
        try:
            doc = json.loads(blob)
            scopes = doc["scopes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a templater snapshot: {blob[:40]!r}") from exc
        self._scopes = {}
        for scope, sdoc in scopes.items():
            s = _Scope(f"{scope}/" if scope else "", self.sim_th, self.depth, self.sibling_merge)
            s.load_doc(sdoc)
            self._scopes[scope] = s

    def save(self, scope: str | None = None) -> None:
        """Checkpoint ``scope`` (every loaded scope when ``None``) to the store."""
        if self.store is None:
            return
        with self._lock:
            names = list(self._scopes) if scope is None else [scope]
            items = {self._key(n): json.dumps(self._scopes[n].to_doc()).encode() for n in names if n in self._scopes}
            if items:
                self.store.save_checkpoints(items, version="templates-1")
            for n in names:
                self._unsaved[n] = 0
