"""Reads commits and release tags from local git clones, with the real ``git`` (subprocess).

One source holds many repositories (``GitRepo``: ``path``, ``name``, branch globs, an optional
``remote`` fetched before reading). For each repository it lists the commits of the selected
branches that are new since the cursor, with ``--numstat``, oldest first (parents before
children), and the release tags (``release_tag_pattern``) it has not seen yet.

Events
------
``commit`` (entity ``repo:NAME``, native id ``NAME:<sha>``):
  labels ``author`` (name), ``branch`` (the first selected branch that holds it, ``main`` /
  ``master`` first), ``merge`` (``"true"``/``"false"``), ``off_hours`` (``"true"`` when the author's
  local hour is outside ``work_hours``, or on a weekend when ``weekend_off_hours``), ``late``
  (``"true"`` within ``freeze_window`` before the next release tag of the repository, in time,
  ``"false"`` otherwise,
  ``"unknown"`` while no later release tag exists), ``first_time_author`` (``"true"`` for the
  author's first commit in that repository, by e-mail); values ``lines_added``, ``lines_deleted``,
  ``files``, ``size`` (added + deleted), ``hour`` (author local hour, fractional), and
  ``late_hours`` (hours from the commit to the next release tag, only when that tag exists);
  attrs ``sha``, ``subject``, ``author_email``, ``committed_at``, ``parents``.
``release`` (entity ``repo:NAME``, native id ``NAME:tag:<tag>``): labels ``tag``; values
  ``commits`` (since the previous release tag), ``late_commits`` and ``late_lines`` (those
  committed within ``freeze_window`` before the tag, and their size); attrs ``sha``,
  ``late_shas``.

Lateness is only known once the release tag exists. A commit pulled before its release is tagged
says ``late="unknown"`` (its id is stable, so it is not re-emitted); the ``release`` event that
follows when the tag appears carries the late check-ins (``late_commits``, ``late_shas``). A
history read after the tags exist (a backfill) gets ``late`` and ``late_hours`` on every commit.
Merge commits have no numstat of their own (``git log`` shows no diff for merges): their sizes
are 0 and ``merge="true"``.

Cursor
------
Per repository: ``tips``, the commits whose ancestors have all been emitted (the branch tips at
the end of a run, or the heads of the emitted set after a partial batch), the e-mails of known
authors and the release tags seen. The next run lists ``git log BRANCHES --not TIPS``, so a
rewritten (force-pushed) branch yields its new commits only, and a tip that no longer exists is
dropped (its commits may be listed again; stable ids make that idempotent). Every batch of
``batch_size`` events is committed with the cursor, so a crash resumes where it stopped.

Cost of a poll: one ``git for-each-ref`` per repository reads its branches and tags; a repository
whose selected branch tips are the cursor's and that has no new release tag is not read further
(and yields no batch). A repository that moved costs one more ``git log`` for all its branches
(which branch holds a commit is worked out from the parents), plus one per new release tag. That a
path is the top of a repository is checked once per collector (and again after a failure).

Errors: a repository that is missing, not a git repository, or fails to fetch does not stop the
others; after the good ones are read, a :class:`~opsradar.errors.CollectorError` names each failed
repository and why.

>>> import subprocess, tempfile, os
>>> from opsradar.config import GitSource
>>> d = tempfile.mkdtemp()
>>> env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-05T23:30:00+01:00", "GIT_COMMITTER_DATE": "2026-01-05T23:30:00+01:00"}
>>> _ = subprocess.run(["git", "init", "-q", "-b", "main", d], check=True)
>>> _ = open(os.path.join(d, "a.txt"), "w").write("one\\ntwo\\n")
>>> _ = subprocess.run(["git", "-C", d, "add", "."], check=True)
>>> _ = subprocess.run(["git", "-C", d, "-c", "user.name=Ana", "-c", "user.email=ana@x.io", "commit", "-qm", "first"], check=True, env=env)
>>> col = GitCollector("git", GitSource(repos=[{"path": d, "name": "shop-svc"}]))
>>> [(e.kind, e.entity, e.labels["off_hours"], e.labels["first_time_author"], e.values["lines_added"])
...  for b in col.pull(None) for e in b.events]
[('commit', 'repo:shop-svc', 'true', 'true', 2.0)]
>>> import shutil; shutil.rmtree(d)
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsradar.collectors.base import Batch, Collector, Rejected
from opsradar.collectors.registry import register
from opsradar.config import GitRepo, GitSource
from opsradar.errors import CollectorError
from opsradar.models import Event

__all__ = ["GitCollector", "GitError", "git"]

log = logging.getLogger(__name__)

_REC = "\x1e"
_SEP = "\x1f"
_LOG_FORMAT = f"--format={_REC}%H{_SEP}%P{_SEP}%an{_SEP}%ae{_SEP}%aI{_SEP}%cI{_SEP}%s"
_PREFERRED = ("main", "master", "trunk", "develop")


class GitError(Exception):
    """A git command failed; the message holds the command and git's own error."""


def _run_git(cmd: list[str], *, timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one git command line (every git call of this module goes through here)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=timeout, env=env, check=False)


def git(repo: str | os.PathLike[str], *args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
    """Run ``git -C repo args…`` and return its standard output (``GitError`` on failure)."""
    cmd = ["git", "-C", str(repo), "-c", "core.quotepath=off", *args]
    try:
        out = _run_git(cmd, timeout=timeout, stdin=stdin)
    except FileNotFoundError as exc:
        raise GitError("the git executable was not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args[:2])} timed out after {timeout:.0f}s") from exc
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args[:3])}: {msg[-1] if msg else f'exit status {out.returncode}'}")
    return out.stdout


@dataclass
class _Commit:
    sha: str
    parents: list[str]
    author: str
    email: str
    authored: datetime  # with the author's own offset
    committed: datetime
    subject: str
    added: int = 0
    deleted: int = 0
    files: int = 0


@dataclass
class _Release:
    tag: str
    sha: str
    ts: datetime


@dataclass
class _RepoState:
    tips: list[str] = field(default_factory=list)
    authors: set[str] = field(default_factory=set)
    releases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Any) -> _RepoState:
        if not isinstance(doc, dict):
            return cls()
        return cls(list(doc.get("tips", [])), set(doc.get("authors", [])), dict(doc.get("releases", {})))

    def to_doc(self) -> dict[str, Any]:
        return {"tips": sorted(self.tips), "authors": sorted(self.authors), "releases": dict(sorted(self.releases.items()))}


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.strip())


def _parse_log(text: str) -> list[_Commit]:
    commits: list[_Commit] = []
    for record in text.split(_REC)[1:]:
        head, _, rest = record.partition("\n")
        parts = head.split(_SEP)
        if len(parts) < 7:
            continue
        sha, parents, author, email, authored, committed = parts[:6]
        subject = _SEP.join(parts[6:])
        c = _Commit(sha, parents.split(), author, email, _parse_iso(authored), _parse_iso(committed), subject)
        for line in rest.splitlines():
            cols = line.split("\t", 2)
            if len(cols) != 3:
                continue
            c.files += 1
            c.added += int(cols[0]) if cols[0].isdigit() else 0  # "-" for binary files
            c.deleted += int(cols[1]) if cols[1].isdigit() else 0
        commits.append(c)
    return commits


def _branch_of(branches: dict[str, str], commits: Sequence[_Commit]) -> dict[str, str]:
    """Which selected branch holds each of ``commits`` (the new commits): the first, in priority order.

    The same answer as ``git rev-list TIP --not OLD_TIPS EARLIER_TIPS`` per branch, from the parents
    that ``git log`` already gave: a walk from each tip through new commits, stopping at commits an
    earlier branch holds (their ancestors are held too) and at commits that are not new.

    >>> c = [_Commit(s, p, "a", "a@x", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "")
    ...      for s, p in (("a", ["old"]), ("b", ["a"]), ("f", ["a"]))]
    >>> _branch_of({"main": "b", "feature": "f"}, c)
    {'b': 'main', 'a': 'main', 'f': 'feature'}
    """
    parents = {c.sha: c.parents for c in commits}
    out: dict[str, str] = {}
    for branch, tip in branches.items():
        stack = [tip]
        while stack:
            sha = stack.pop()
            if sha in out or sha not in parents:
                continue
            out[sha] = branch
            stack.extend(parents[sha])
    return out


class GitCollector(Collector):  # type: ignore[misc]  # mypy sees opsradar.collectors via the folder mapping as Any
    """Commits and release tags of many local clones."""

    kind = "git"

    def __init__(self, name: str, config: GitSource, *, now: Any = None) -> None:
        super().__init__(name)
        self.config = config
        self._release_re = re.compile(config.release_tag_pattern)
        self._now = now or (lambda: datetime.now(UTC))
        self._checked: set[str] = set()  # repository paths found to be the top of a repository

    @staticmethod
    def repo_name(repo: GitRepo) -> str:
        return repo.name or Path(repo.path).resolve().name

    # ------------------------------------------------------------------ pull

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        state: dict[str, Any] = {"repos": dict((cursor or {}).get("repos", {}))} if isinstance(cursor, dict) else {"repos": {}}
        failures: list[str] = []
        for repo in self.config.repos:
            name = self.repo_name(repo)
            try:
                yield from self._pull_repo(repo, name, state, until)
            except GitError as exc:
                failures.append(f"repo {name!r} at {repo.path}: {exc}")
                log.warning("source %r: %s", self.name, failures[-1])
        if failures:
            raise CollectorError("; ".join(failures), source=self.name,
                                 hint="check the repos' path (a git clone) and remote; the other repos were read")

    def _check_repo(self, repo: GitRepo) -> None:
        """The path is the top of a git repository (checked once per collector, again after a failure)."""
        if not Path(repo.path).is_dir():
            raise GitError("the path does not exist or is not a directory")
        if repo.path in self._checked:
            return
        try:
            bare = git(repo.path, "rev-parse", "--is-bare-repository", timeout=self._timeout).strip()
            top = repo.path if bare == "true" else git(repo.path, "rev-parse", "--show-toplevel", timeout=self._timeout).strip()
        except GitError as exc:
            raise GitError(f"not a git repository ({exc})") from exc
        if Path(top).resolve() != Path(repo.path).resolve():
            raise GitError(f"not a git repository: it is a folder inside the repository {top}")
        self._checked.add(repo.path)

    @property
    def _timeout(self) -> float:
        return max(5.0, self.config.timeout.total_seconds())

    def _refs(self, repo: GitRepo) -> tuple[dict[str, str], list[_Release]]:
        """The selected branches (name → tip sha; remote-tracking branches when ``remote`` is set,
        fetched first) and the release tags (oldest first), read with one ``git for-each-ref``."""
        if repo.remote:
            git(repo.path, "fetch", "--quiet", "--prune", "--tags", repo.remote, timeout=self._timeout)
            heads = f"refs/remotes/{repo.remote}/"
        else:
            heads = "refs/heads/"
        fmt = "--format=%(refname)%00%(objectname)%00%(*objectname)%00%(creatordate:iso-strict)"
        out = git(repo.path, "for-each-ref", fmt, heads.rstrip("/"), "refs/tags", timeout=self._timeout)
        branches: dict[str, str] = {}
        releases: list[_Release] = []
        for line in out.splitlines():
            ref, obj, peeled, date = [*line.split("\0"), "", "", "", ""][:4]
            if ref.startswith(heads):
                short = ref[len(heads):]
                if short != "HEAD" and any(fnmatch.fnmatchcase(short, g) for g in repo.branches):
                    branches[short] = obj
            elif ref.startswith("refs/tags/"):
                tag = ref[len("refs/tags/"):]
                if self._release_re.search(tag) and date:
                    releases.append(_Release(tag, peeled or obj, _parse_iso(date).astimezone(UTC)))
        order = sorted(branches, key=lambda b: (_PREFERRED.index(b) if b in _PREFERRED else len(_PREFERRED), b))
        return {b: branches[b] for b in order}, sorted(releases, key=lambda r: (r.ts, r.tag))

    def _pull_repo(self, repo: GitRepo, name: str, state: dict[str, Any], until: datetime | None) -> Iterator[Batch]:
        try:
            self._check_repo(repo)
            rs = _RepoState.from_doc(state["repos"].get(name))
            branches, releases = self._refs(repo)
        except GitError:
            self._checked.discard(repo.path)
            raise
        new_releases = [r for r in releases if rs.releases.get(r.tag) != r.sha and (until is None or r.ts < until)]
        current = set(branches.values())
        if not new_releases and set(rs.tips) == current:
            return  # no branch moved and no new release tag: nothing to read (one git call)
        # earlier tips that no longer exist (rewritten history) are ignored by git log; their
        # commits may be read again and are deduplicated by id; the cursor drops them at the end
        old_tips = list(rs.tips)
        commits: list[_Commit] = []
        if branches and not current <= set(old_tips):
            args = ["log", "--reverse", "--date-order", "--numstat", "--no-renames", "--ignore-missing", _LOG_FORMAT,
                    *branches.values()]
            if old_tips:
                args += ["--not", *old_tips]
            commits = _parse_log(git(repo.path, *args, "--", timeout=self._timeout))
        branch_of = _branch_of(branches, commits)
        if until is not None:
            commits = [c for c in commits if c.committed < until]
        release_times = [r.ts for r in releases]

        heads = set(old_tips)
        pending: list[Event] = []
        rejected: list[Rejected] = []
        size = self.config.batch_size

        def flush(final: bool) -> Batch:
            rs.tips = sorted(set(branches.values())) if final and until is None else sorted(heads)
            state["repos"][name] = rs.to_doc()
            batch = Batch(events=list(pending), cursor={"repos": {k: v for k, v in state["repos"].items()}},
                          rejected=list(rejected))
            pending.clear()
            rejected.clear()
            return batch

        for c in commits:
            try:
                pending.append(self._commit_event(name, c, branch_of[c.sha], rs, releases, release_times))
            except ValueError as exc:
                rejected.append(Rejected(f"{name}:{c.sha}", str(exc)))
            heads.difference_update(c.parents)
            heads.add(c.sha)
            if len(pending) + len(rejected) >= size:
                yield flush(final=False)
        for r in new_releases:
            try:
                pending.append(self._release_event(repo, name, r, releases))
            except (ValueError, GitError) as exc:
                rejected.append(Rejected(f"{name}:tag:{r.tag}", str(exc)))
            rs.releases[r.tag] = r.sha
        yield flush(final=True)

    # ------------------------------------------------------------------ events

    def _commit_event(self, repo: str, c: _Commit, branch: str, rs: _RepoState, releases: list[_Release],
                      release_times: list[datetime]) -> Event:
        cfg = self.config
        start, end = cfg.work_hours
        local = c.authored
        hour = local.hour + local.minute / 60
        off = not (start <= local.hour < end) or (cfg.weekend_off_hours and local.weekday() >= 5)
        email = c.email.strip().lower()
        first = email not in rs.authors
        rs.authors.add(email)
        committed = c.committed.astimezone(UTC)
        labels = {"author": c.author or email or "unknown", "branch": branch,
                  "merge": "true" if len(c.parents) > 1 else "false", "off_hours": "true" if off else "false",
                  "first_time_author": "true" if first else "false"}
        values = {"lines_added": float(c.added), "lines_deleted": float(c.deleted), "files": float(c.files),
                  "size": float(c.added + c.deleted), "hour": round(hour, 4)}
        i = bisect.bisect_left(release_times, committed)
        if i < len(releases):
            late_hours = (releases[i].ts - committed).total_seconds() / 3600
            values["late_hours"] = round(late_hours, 4)
            labels["late"] = "true" if late_hours <= cfg.freeze_window.total_seconds() / 3600 else "false"
            next_release = releases[i].tag
        else:
            labels["late"] = "unknown"
            next_release = None
        attrs = {"sha": c.sha, "subject": c.subject[:500], "author_email": email,
                 "committed_at": committed.isoformat(), "parents": c.parents}
        if next_release:
            attrs["next_release"] = next_release
        return Event.new(source=self.name, native_id=f"{repo}:{c.sha}", kind="commit", ts=committed,
                         entity=f"repo:{repo}", labels=labels, values=values, attrs=attrs)

    def _release_event(self, repo: GitRepo, name: str, r: _Release, releases: list[_Release]) -> Event:
        idx = releases.index(r)
        prev = releases[idx - 1] if idx > 0 else None
        args = ["log", "--numstat", "--no-renames", _LOG_FORMAT, r.sha]
        if prev is not None:
            args += ["--not", prev.sha]
        in_release = _parse_log(git(repo.path, *args, "--", timeout=self._timeout))
        window_start = r.ts - self.config.freeze_window
        late = [c for c in in_release if window_start <= c.committed.astimezone(UTC) <= r.ts]
        return Event.new(
            source=self.name, native_id=f"{name}:tag:{r.tag}", kind="release", ts=r.ts, entity=f"repo:{name}",
            labels={"tag": r.tag},
            values={"commits": float(len(in_release)), "late_commits": float(len(late)),
                    "late_lines": float(sum(c.added + c.deleted for c in late))},
            attrs={"sha": r.sha, "previous": prev.tag if prev else None, "late_shas": [c.sha for c in late][:200]},
        )


def _factory(name: str, config: Any) -> Collector:
    return GitCollector(name, config)


register("git", _factory)
