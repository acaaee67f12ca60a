"""Real git repositories for the simulated world, whose history appears as simulated time passes.

The whole history of a repository is known in advance (:class:`GitCommit` records with their dates),
so commit SHAs are computed here, in Python, exactly as git computes them (:func:`commit_sha`): the
ground truth can name a root-cause commit by SHA before any repository exists.

:class:`RepoSet` writes every object at once with ``git fast-import`` into a hidden *store*
repository, and gives each visible repository (the one the git collector reads) the store's objects
through ``objects/info/alternates`` but no refs. :meth:`RepoSet.advance` then moves the visible
branches and creates the tags whose time has come (``git update-ref --stdin``), so ``git log --all``
in a visible repository shows only the past.

>>> blob_sha(b"hello\\n")
'ce013625030ba8dba906f756967f9e9ca394464a'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from opsradar.errors import OpsradarError

__all__ = ["GitCommit", "GitTag", "RepoSet", "blob_sha", "commit_sha", "tree_sha"]


@dataclass(frozen=True)
class GitCommit:
    """One commit. ``tree`` is the complete file tree after it (path → content)."""

    cid: str  # internal id, unique in the world
    repo: str
    branch: str
    author: str
    email: str
    authored: datetime
    committed: datetime
    message: str
    tree: Mapping[str, bytes]
    parents: tuple[str, ...] = ()  # cids
    changed: tuple[str, ...] = ()  # paths changed against the first parent
    sha: str = ""

    @property
    def visible_at(self) -> datetime:
        return self.committed


@dataclass(frozen=True)
class GitTag:
    repo: str
    name: str
    target: str  # cid
    tagger: str
    email: str
    ts: datetime
    message: str


def _obj_sha(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body, usedforsecurity=False).hexdigest()


def blob_sha(content: bytes) -> str:
    """The SHA-1 git gives a file's content."""
    return _obj_sha("blob", content)


def tree_sha(files: Mapping[str, bytes]) -> str:
    """The SHA-1 of the tree holding ``files`` (path → content, ``/``-separated, regular files)."""
    return _tree(files)[0]


def _tree(files: Mapping[str, bytes]) -> tuple[str, bytes]:
    here: dict[str, bytes] = {}
    subdirs: dict[str, dict[str, bytes]] = {}
    for path, content in files.items():
        head, sep, rest = path.partition("/")
        if sep:
            subdirs.setdefault(head, {})[rest] = content
        else:
            here[head] = content
    entries: list[tuple[str, bytes]] = []  # (sort key, entry bytes)
    for name, content in here.items():
        entries.append((name, b"100644 " + name.encode() + b"\0" + bytes.fromhex(blob_sha(content))))
    for name, sub in subdirs.items():
        sha = _tree(sub)[0]
        entries.append((name + "/", b"40000 " + name.encode() + b"\0" + bytes.fromhex(sha)))
    body = b"".join(e for _, e in sorted(entries, key=lambda t: t[0].encode()))
    return _obj_sha("tree", body), body


def _ident(name: str, email: str, when: datetime) -> str:
    return f"{name} <{email}> {int(when.timestamp())} +0000"


def commit_sha(commit: GitCommit, parent_shas: Iterable[str]) -> str:
    """The SHA-1 git gives ``commit`` (its message must end with a newline)."""
    lines = [f"tree {tree_sha(commit.tree)}"]
    lines += [f"parent {p}" for p in parent_shas]
    lines.append(f"author {_ident(commit.author, commit.email, commit.authored)}")
    lines.append(f"committer {_ident(commit.author, commit.email, commit.committed)}")
    body = ("\n".join(lines) + "\n\n" + commit.message).encode()
    return _obj_sha("commit", body)


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "HOME": str(cwd)}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env=env, check=True)
    except FileNotFoundError as exc:
        raise OpsradarError("the demo needs the `git` command on PATH") from exc
    except subprocess.CalledProcessError as exc:
        raise OpsradarError(f"git {' '.join(args[:2])} failed in {cwd}: {exc.stderr.decode(errors='replace').strip()}") from exc
    return out.stdout.decode()


def _data(payload: bytes) -> bytes:
    return b"data " + str(len(payload)).encode() + b"\n" + payload + b"\n"


@dataclass
class _Repo:
    name: str
    store: Path
    visible: Path
    commits: list[GitCommit] = field(default_factory=list)  # in visibility order
    tags: list[GitTag] = field(default_factory=list)
    tag_objects: dict[str, str] = field(default_factory=dict)
    next_commit: int = 0
    next_tag: int = 0
    heads: dict[str, str] = field(default_factory=dict)


class RepoSet:
    """The world's repositories under ``root``: ``root/<repo>`` (visible) and ``root/.store/<repo>``."""

    def __init__(self, root: Path, commits: Iterable[GitCommit], tags: Iterable[GitTag]) -> None:
        self.root = Path(root)
        self._repos: dict[str, _Repo] = {}
        self._by_cid: dict[str, GitCommit] = {}
        for c in commits:
            if not c.sha:
                raise ValueError(f"commit {c.cid!r} has no SHA: compute it with commit_sha first")
            repo = self._repo(c.repo)
            repo.commits.append(c)
            self._by_cid[c.cid] = c
        for t in tags:
            self._repo(t.repo).tags.append(t)
        for repo in self._repos.values():
            repo.commits.sort(key=lambda c: c.visible_at)
            repo.tags.sort(key=lambda t: t.ts)

    def _repo(self, name: str) -> _Repo:
        if name not in self._repos:
            self._repos[name] = _Repo(name, self.root / ".store" / name, self.root / name)
        return self._repos[name]

    def path(self, repo: str) -> Path:
        return self._repos[repo].visible

    @property
    def names(self) -> list[str]:
        return sorted(self._repos)

    def create(self) -> None:
        """Write every object into the store repositories and create empty visible repositories."""
        for repo in self._repos.values():
            for p in (repo.store, repo.visible):
                if p.exists():
                    shutil.rmtree(p)
                p.mkdir(parents=True)
            _git(repo.store, "init", "-q", "--bare")
            _git(repo.visible, "init", "-q", "-b", "main")
            _git(repo.visible, "config", "user.name", "opsradar demo")
            _git(repo.visible, "config", "user.email", "demo@opsradar.invalid")
            alternates = repo.visible / ".git" / "objects" / "info" / "alternates"
            alternates.write_text(str((repo.store / "objects").resolve()) + "\n")
            self._import(repo)

    def _import(self, repo: _Repo) -> None:
        stream = bytearray()
        marks: dict[str, int] = {}
        trees: dict[str, Mapping[str, bytes]] = {}
        # commits in topological order: parents always come earlier in time here, but sort to be sure
        for n, c in enumerate(sorted(repo.commits, key=lambda c: (c.committed, c.authored)), start=1):
            marks[c.cid] = n
            stream += f"commit refs/import/{n}\nmark :{n}\n".encode()
            stream += f"author {_ident(c.author, c.email, c.authored)}\n".encode()
            stream += f"committer {_ident(c.author, c.email, c.committed)}\n".encode()
            stream += _data(c.message.encode())
            if c.parents:
                stream += f"from :{marks[c.parents[0]]}\n".encode()
                for p in c.parents[1:]:
                    stream += f"merge :{marks[p]}\n".encode()
            base = trees.get(c.parents[0], {}) if c.parents else {}
            for path in sorted(set(base) - set(c.tree)):
                stream += f"D {path}\n".encode()
            for path, content in sorted(c.tree.items()):
                if base.get(path) != content:
                    stream += f"M 100644 inline {path}\n".encode() + _data(content)
            stream += b"\n"
            trees[c.cid] = c.tree
        for t in repo.tags:
            stream += f"tag {t.name}\nfrom :{marks[t.target]}\n".encode()
            stream += f"tagger {_ident(t.tagger, t.email, t.ts)}\n".encode()
            stream += _data(t.message.encode())
        marks_file = repo.store / "opsradar-marks"
        _git(repo.store, "fast-import", "--quiet", "--done", f"--export-marks={marks_file}", stdin=bytes(stream) + b"done\n")
        got = dict(line.split(" ", 1) for line in marks_file.read_text().splitlines())
        for c in repo.commits:
            sha = got[f":{marks[c.cid]}"].strip()
            if sha != c.sha:
                raise OpsradarError(f"git wrote commit {c.cid} of {repo.name} as {sha}, expected {c.sha}")
        for line in _git(repo.store, "for-each-ref", "--format=%(objectname) %(refname)", "refs/tags").splitlines():
            sha, ref = line.split(" ", 1)
            repo.tag_objects[ref.removeprefix("refs/tags/")] = sha

    def advance(self, now: datetime) -> list[GitCommit]:
        """Show every commit committed and tag created at or before ``now``; returns the new commits."""
        shown: list[GitCommit] = []
        for repo in self._repos.values():
            updates: list[str] = []
            while repo.next_commit < len(repo.commits) and repo.commits[repo.next_commit].visible_at <= now:
                c = repo.commits[repo.next_commit]
                repo.heads[c.branch] = c.sha
                shown.append(c)
                repo.next_commit += 1
            while repo.next_tag < len(repo.tags) and repo.tags[repo.next_tag].ts <= now:
                t = repo.tags[repo.next_tag]
                updates.append(f"update refs/tags/{t.name} {repo.tag_objects[t.name]}")
                repo.next_tag += 1
            moved = {c.branch for c in shown if c.repo == repo.name}
            updates += [f"update refs/heads/{branch} {repo.heads[branch]}" for branch in sorted(moved)]
            if updates:
                _git(repo.visible, "update-ref", "--stdin", stdin=("\n".join(updates) + "\n").encode())
        return shown
