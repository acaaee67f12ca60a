"""The git collector against real repositories made here with ``git`` (dates set through the env)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsradar.collectors import git as git_module
from opsradar.collectors.base import run_once
from opsradar.collectors.git import GitCollector
from opsradar.collectors.registry import build_collector
from opsradar.config import GitSource
from opsradar.errors import CollectorError
from opsradar.models import Event
from opsradar.store import Store


class Repo:
    """A throw-away repository with commits at given dates."""

    def __init__(self, path: Path, *, branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.run("init", "-q", "-b", branch)

    def run(self, *args: str, when: str = "2026-03-02T10:00:00+00:00", author: str = "Ana",
            email: str = "ana@example.com") -> str:
        env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_NAME": author,
               "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": email,
               "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        out = subprocess.run(["git", "-C", str(self.path), *args], env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def commit(self, when: str, *, files: dict[str, str] | None = None, author: str = "Ana",
               email: str = "ana@example.com", msg: str = "change") -> str:
        for name, text in (files or {f"f-{when[:19].replace(':', '')}.txt": "a\nb\n"}).items():
            p = self.path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        self.run("add", "-A", when=when)
        self.run("commit", "-q", "-m", msg, when=when, author=author, email=email)
        return self.run("rev-parse", "HEAD")

    def tag(self, name: str, when: str) -> None:
        self.run("tag", "-a", name, "-m", f"release {name}", when=when)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


def source(*repos: Repo | str, **kw: Any) -> GitSource:
    entries = [{"path": str(r.path) if isinstance(r, Repo) else r, "name": Path(str(r.path if isinstance(r, Repo) else r)).name}
               for r in repos]
    return GitSource(repos=entries, **kw)  # type: ignore[arg-type]


def commits(store: Store) -> dict[str, Event]:
    return {e.attrs["sha"]: e for e in store.iter_events() if e.kind == "commit"}


def test_incremental_pull_across_two_runs_no_gaps_no_duplicates(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "shop-svc")
    first = [repo.commit(f"2026-03-02T1{i}:00:00+00:00") for i in range(5)]
    col = GitCollector("git", source(repo, batch_size=2))
    r1 = run_once(col, store)
    assert (r1.new, r1.batches) == (5, 3)  # batches of 2, each committed with its cursor
    later = [repo.commit(f"2026-03-03T1{i}:00:00+00:00") for i in range(3)]
    repo.tag("v1.0", "2026-03-03T18:00:00+00:00")
    r2 = run_once(col, store)
    assert r2.new == 4
    assert r2.by_kind == {"commit": 3, "release": 1}
    assert run_once(col, store).new == 0
    assert set(commits(store)) == set(first + later)
    cursor = store.get_cursor("git")["repos"]["shop-svc"]
    assert cursor["tips"] == [later[-1]]
    assert cursor["releases"] == {"v1.0": repo.run("rev-parse", "v1.0^{commit}")}


def test_commit_labels_and_values(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "pay-svc")
    a = repo.commit("2026-03-02T10:00:00+01:00", files={"src/a.py": "1\n2\n3\n", "b.bin": "\0\1\2"})
    b = repo.commit("2026-03-02T23:30:00+01:00", files={"src/a.py": "1\nTWO\n3\n4\n"}, author="Bo", email="BO@example.com")
    c = repo.commit("2026-03-07T11:00:00+00:00", author="Bo", email="bo@example.com")  # a Saturday
    repo.run("checkout", "-q", "-b", "feature/x")
    d = repo.commit("2026-03-09T09:00:00+00:00", author="Cy", email="cy@example.com")
    repo.run("checkout", "-q", "main")
    repo.run("merge", "-q", "--no-ff", "-m", "merge feature/x", "feature/x", when="2026-03-09T12:00:00+00:00")
    merge = repo.run("rev-parse", "HEAD")
    run_once(GitCollector("git", source(repo)), store)
    ev = commits(store)
    assert ev[a].values == {"lines_added": 3.0, "lines_deleted": 0.0, "files": 2.0, "size": 3.0, "hour": 10.0}
    assert ev[a].labels == {"author": "Ana", "branch": "main", "merge": "false", "off_hours": "false",
                            "first_time_author": "true", "late": "unknown"}
    assert ev[b].values["lines_added"] == 2.0
    assert ev[b].values["lines_deleted"] == 1.0
    assert ev[b].values["hour"] == 23.5  # the author's local time
    assert ev[b].labels["off_hours"] == "true"
    assert ev[b].labels["first_time_author"] == "true"
    assert ev[c].labels["first_time_author"] == "false"  # same author, e-mail case ignored
    assert ev[c].labels["off_hours"] == "true"  # weekend
    assert ev[d].labels["branch"] == "main"  # merged: main comes first
    assert ev[merge].labels["merge"] == "true"
    assert ev[merge].values["size"] == 0.0
    assert {e.entity for e in ev.values()} == {"repo:pay-svc"}


def test_branch_label_before_merge_and_branch_globs(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "svc")
    repo.commit("2026-03-02T10:00:00+00:00")
    repo.run("checkout", "-q", "-b", "feature/y")
    f = repo.commit("2026-03-02T11:00:00+00:00")
    repo.run("checkout", "-q", "-b", "scratch")
    s = repo.commit("2026-03-02T12:00:00+00:00")
    cfg = GitSource(repos=[{"path": str(repo.path), "branches": ["main", "feature/*"]}])  # type: ignore[list-item]
    run_once(GitCollector("git", cfg), store)
    ev = commits(store)
    assert ev[f].labels["branch"] == "feature/y"
    assert s not in ev


def test_late_check_ins_against_existing_tags_and_when_the_tag_comes_later(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "shop-svc")
    early = repo.commit("2026-03-01T08:00:00+00:00")
    late = repo.commit("2026-03-02T16:00:00+00:00")
    repo.tag("v1.0.0", "2026-03-02T18:00:00+00:00")
    repo.tag("not-a-release", "2026-03-02T18:30:00+00:00")
    pending = repo.commit("2026-03-03T17:30:00+00:00", files={"big.txt": "x\n" * 40})
    col = GitCollector("git", source(repo, freeze_window="24h"))
    run_once(col, store)
    ev = commits(store)
    assert ev[early].labels["late"] == "false"
    assert ev[early].values["late_hours"] == 34.0
    assert ev[late].labels["late"] == "true"
    assert ev[late].values["late_hours"] == 2.0
    assert ev[pending].labels["late"] == "unknown"  # no release tag after it yet
    assert "late_hours" not in ev[pending].values
    # the release is tagged after the commit was collected: the release event carries it
    repo.tag("v1.1.0", "2026-03-03T18:00:00+00:00")
    result = run_once(col, store, keep_new_events=True)
    (release,) = result.new_events
    assert release.kind == "release"
    assert release.labels == {"tag": "v1.1.0"}
    assert release.values == {"commits": 1.0, "late_commits": 1.0, "late_lines": 40.0}
    assert release.attrs["late_shas"] == [pending]
    tags = sorted(e.labels["tag"] for e in store.iter_events() if e.kind == "release")
    assert tags == ["v1.0.0", "v1.1.0"]


def test_a_rewritten_branch_yields_only_its_new_commits(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "svc")
    base = repo.commit("2026-03-02T10:00:00+00:00")
    repo.commit("2026-03-02T11:00:00+00:00")
    col = GitCollector("git", source(repo))
    assert run_once(col, store).new == 2
    repo.run("reset", "-q", "--hard", base)  # a force-push rewrote main
    new = repo.commit("2026-03-02T12:00:00+00:00", msg="rewritten")
    result = run_once(col, store, keep_new_events=True)
    assert [e.attrs["sha"] for e in result.new_events] == [new]
    repo.run("reflog", "expire", "--expire=now", "--all")
    repo.run("gc", "-q", "--prune=now")  # the old tip is gone for good
    assert run_once(col, store).new == 0
    assert store.get_cursor("git")["repos"]["svc"]["tips"] == [new]


def test_a_crash_between_fetch_and_commit_then_resume_loses_nothing(tmp_path: Path, store: Store) -> None:
    repo = Repo(tmp_path / "svc")
    shas = [repo.commit(f"2026-03-02T{10 + i}:00:00+00:00") for i in range(7)]
    col = GitCollector("git", source(repo, batch_size=3))
    real_add = store.add_events
    calls = {"n": 0}

    def crashing_add(events: Any, **kw: Any) -> Any:
        if "conn" not in kw:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("killed before committing the second batch")
        return real_add(events, **kw)

    store.add_events = crashing_add  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run_once(col, store)
    store.add_events = real_add  # type: ignore[method-assign]
    assert set(commits(store)) == set(shas[:3])
    assert store.get_cursor("git")["repos"]["svc"]["tips"] == [shas[2]]
    assert run_once(col, store).new == 4
    assert set(commits(store)) == set(shas)


def test_missing_and_corrupt_repos_give_clear_errors_while_the_others_carry_on(tmp_path: Path, store: Store) -> None:
    good = Repo(tmp_path / "good")
    good.commit("2026-03-02T10:00:00+00:00")
    not_repo = tmp_path / "plain"
    not_repo.mkdir()
    corrupt = Repo(tmp_path / "corrupt")
    corrupt.commit("2026-03-02T10:00:00+00:00")
    (corrupt.path / ".git" / "HEAD").write_text("garbage\n")
    inner = good.path / "docs"
    inner.mkdir()
    cfg = source(str(tmp_path / "missing"), not_repo.as_posix(), corrupt, inner.as_posix(), good)
    with pytest.raises(CollectorError) as info:
        run_once(GitCollector("git", cfg), store)
    msg = str(info.value)
    assert "repo 'missing'" in msg
    assert "the path does not exist" in msg
    assert "repo 'plain'" in msg
    assert "not a git repository" in msg
    assert "repo 'corrupt'" in msg
    assert "repo 'docs'" in msg
    assert "a folder inside the repository" in msg
    assert "the other repos were read" in msg
    assert {e.entity for e in store.iter_events()} == {"repo:good"}  # committed before the error


def test_fetches_the_remote_before_reading(tmp_path: Path, store: Store) -> None:
    upstream = Repo(tmp_path / "upstream")
    upstream.commit("2026-03-02T10:00:00+00:00")
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(tmp_path / "clone")], check=True)
    cfg = GitSource(repos=[{"path": str(tmp_path / "clone"), "name": "shop-svc", "remote": "origin"}])  # type: ignore[list-item]
    col = GitCollector("git", cfg)
    assert run_once(col, store).new == 1
    upstream.commit("2026-03-02T11:00:00+00:00")
    upstream.tag("v2.0", "2026-03-02T12:00:00+00:00")
    result = run_once(col, store)
    assert result.by_kind == {"commit": 1, "release": 1}


def test_a_poll_that_finds_nothing_new_costs_one_git_call_per_repo(tmp_path: Path, store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repos = [Repo(tmp_path / f"svc{i}") for i in range(3)]
    for r in repos:
        r.commit("2026-03-02T09:00:00+00:00")
        r.run("checkout", "-q", "-b", "feature/a")
        r.commit("2026-03-02T10:00:00+00:00")
        r.run("checkout", "-q", "main")
        r.tag("v1.0", "2026-03-02T11:00:00+00:00")
    cfg = GitSource(repos=[{"path": str(r.path), "name": r.path.name, "branches": ["main", "feature/*"]}  # type: ignore[misc]
                           for r in repos])
    col = GitCollector("git", cfg)
    assert run_once(col, store).by_kind == {"commit": 6, "release": 3}
    calls: list[list[str]] = []
    real = git_module._run_git

    def counting(cmd: list[str], **kw: Any) -> Any:
        calls.append(cmd[cmd.index("core.quotepath=off") + 1:])
        return real(cmd, **kw)

    monkeypatch.setattr(git_module, "_run_git", counting)
    assert run_once(col, store).new == 0
    assert [c[0] for c in calls] == ["for-each-ref"] * 3  # branches and tags of each repo in one call
    # one repository moved: it alone is read further, with one git log for all its branches
    calls.clear()
    new = repos[1].commit("2026-03-02T12:00:00+00:00")
    result = run_once(col, store, keep_new_events=True)
    assert [e.attrs["sha"] for e in result.new_events] == [new]
    assert [c[0] for c in calls] == ["for-each-ref", "for-each-ref", "log", "for-each-ref"]
    calls.clear()
    assert run_once(col, store).new == 0
    assert len(calls) == 3


def test_the_registry_builds_the_collector(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "svc")
    assert isinstance(build_collector("git", source(repo)), GitCollector)
