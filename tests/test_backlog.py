"""Backlog loading: both formats, the real backlogs, and every bad input's clean error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chump_tui.backlog import Gap, default_backlog_path, done_ids, load_backlog
from chump_tui.errors import BacklogError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_monolithic_file_fields_and_extras(tmp_path: Path) -> None:
    f = write(tmp_path / "gaps.yaml", """
meta: {version: '1'}
gaps:
  - id: A-1
    title: first
    priority: P1
    effort: s
    status: open
    depends_on: [B-2]
    description: keep me
  - id: B-2
    status: done
    depends_on:
""")
    backlog = load_backlog(f)
    a, b = backlog.gaps
    assert (a.id, a.title, a.priority, a.effort, a.status) == ("A-1", "first", "P1", "s", "open")
    assert a.depends_on == ("B-2",)
    assert a.extra["description"] == "keep me"
    assert b.depends_on == () and b.title == ""
    assert done_ids(backlog.gaps) == {"B-2"}


def test_registry_dir_reads_in_name_order_skips_empty_and_warns_on_broken(tmp_path: Path) -> None:
    d = tmp_path / "gaps"
    write(d / "B-2.yaml", "- id: B-2\n  status: open\n")
    write(d / "A-1.yaml", "id: A-1\nstatus: done\n")
    write(d / "C-3.yaml", "")
    write(d / "D-4.yaml", "- id: D-4\n  title: [unclosed\n")
    write(d / "notes.txt", "ignored")
    backlog = load_backlog(d)
    assert [g.id for g in backlog.gaps] == ["A-1", "B-2"]
    assert len(backlog.warnings) == 1
    assert "D-4.yaml" in backlog.warnings[0] and "line" in backlog.warnings[0]


def test_default_backlog_prefers_registry_with_yaml(tmp_path: Path) -> None:
    assert default_backlog_path(tmp_path) == tmp_path / "docs" / "gaps.yaml"
    (tmp_path / "docs" / "gaps").mkdir(parents=True)
    assert default_backlog_path(tmp_path) == tmp_path / "docs" / "gaps.yaml"
    write(tmp_path / "docs" / "gaps" / "A-1.yaml", "id: A-1\n")
    assert default_backlog_path(tmp_path) == tmp_path / "docs" / "gaps"


def test_real_monolithic_backlog_loads(real_backlogs: Path) -> None:
    backlog = load_backlog(real_backlogs / "gaps.yaml")
    assert len(backlog.gaps) == 543
    assert len(done_ids(backlog.gaps)) == 423


def test_real_registry_sample_loads(real_backlogs: Path) -> None:
    backlog = load_backlog(real_backlogs / "registry-sample")
    assert len(backlog.gaps) == 160
    assert backlog.warnings == []
    ids = [g.id for g in backlog.gaps]
    assert ids == sorted(ids, key=lambda i: f"{i}.yaml")


BAD = [
    ("missing", None, "backlog not found"),
    ("empty.yaml", "", "file is empty"),
    ("syntax.yaml", "gaps:\n  - id: A\n    title: [oops\n", "line 4, column 1: YAML syntax error"),
    ("list-root.yaml", "- id: A\n", "top level is a list"),
    ("scalar-root.yaml", "hello\n", "top level is a string"),
    ("gaps-map.yaml", "gaps: {id: A}\n", "'gaps' is a mapping, expected a list"),
    ("gap-scalar.yaml", "gaps: [A-1]\n", "gaps[0] is a string, expected a mapping"),
    ("no-id.yaml", "gaps:\n  - title: x\n", "gaps[0] has no 'id'"),
    ("num-id.yaml", "gaps:\n  - id: 12\n", "'id' is a number"),
    ("deps-str.yaml", "gaps:\n  - id: A\n    depends_on: B\n", "'depends_on' is a string"),
    ("deps-num.yaml", "gaps:\n  - id: A\n    depends_on: 3\n", "'depends_on' is a number"),
    ("latin1.yaml", b"gaps:\n  - id: A\n    title: caf\xe9\n", "line 3: not valid UTF-8"),
    ("pyobj.yaml", "gaps: !!python/object/apply:os.system ['touch /tmp/chump-pwned']\n",
     "YAML syntax error"),
]


@pytest.mark.parametrize(("name", "content", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_backlog_raises_one_clear_error(tmp_path: Path, name: str,
                                            content: str | bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(BacklogError) as err:
        load_backlog(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "content", "expected"), BAD[:6] + BAD[-2:],
                         ids=[b[0] for b in BAD[:6] + BAD[-2:]])
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, name: str, content: str | bytes | None,
                                         expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    done = subprocess.run([sys.executable, "-m", "chump_tui", "--no-tui", "--backlog", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chump-tui: ") and str(path) in lines[0] and expected in lines[0]
    assert not Path("/tmp/chump-pwned").exists()


def test_gap_equality_hash_and_pickle_ignore_nothing_but_extra() -> None:
    import pickle

    a = Gap("A-1", "t", "P1", "s", "open", ("B-1",), {"description": "x"}, "gaps.yaml")
    same_but_extra = Gap("A-1", "t", "P1", "s", "open", ("B-1",), {"description": "y"},
                         "gaps.yaml")
    assert a == same_but_extra and hash(a) == hash(same_but_extra)
    assert a != Gap("A-1", "t", "P2", "s", "open", ("B-1",))
    assert len({a, same_but_extra}) == 1
    back = pickle.loads(pickle.dumps(a))  # the forked loaders send gaps through a pipe
    assert back == a and back.extra == {"description": "x"}
    assert "A-1" in repr(a)


def test_options_has_exactly_the_parsers_flags() -> None:
    from chump_tui.cli import build_parser, parse_args
    from chump_tui.options import Options

    flags = set(vars(build_parser().parse_args([])))
    assert flags == set(Options.__annotations__)
    opts = parse_args(["--max-parallel", "3"])
    assert opts.max_parallel == 3 and opts.dry_run is True
