"""`--filter` parsing and matching (util.filters), and Docker's KEY=VALUE
files for --env-file and --label-file (util.kvfile)."""

from __future__ import annotations

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.util.filters import (
    filter_items,
    glob_match,
    parse_filters,
    parse_until,
    port_filter,
    reference_match,
)
from overlayctl.util.kvfile import env_from_files, labels_from, parse_kv_lines


def test_parse_groups_values_by_key_lowercased_and_trimmed():
    f = parse_filters(["name=a", " NAME = b ", "label=x=1", "name=a"], ("name", "label"))
    assert f.fields == {"name": ["a", "b"], "label": ["x=1"]}
    assert "name" in f and "status" not in f and bool(f)
    assert not parse_filters([], ("name",))


@pytest.mark.parametrize(
    "item, message",
    [
        ("foo=1", "invalid filter 'foo'"),
        ("nameonly", "bad format of filter (expected name=value)"),
        ("label!=x", "invalid filter 'label!'"),
    ],
)
def test_parse_refuses_unknown_keys_and_bad_format(item, message):
    with pytest.raises(InvalidArgumentError) as exc:
        parse_filters([item], ("name", "label"))
    assert exc.value.message.startswith(message) and exc.value.exit_code == 125


def test_match_is_an_or_of_exact_or_regex_search():
    f = parse_filters(["name=^web", "name=db$"], ("name",))
    assert f.match("name", "web1") and f.match("name", "mydb") and not f.match("name", "api")
    assert f.match("name", "/x", "webby")  # any of the sources
    assert parse_filters([], ("name",)).match("name", "anything")  # absent key: no constraint
    bad = parse_filters(["name=a[b"], ("name",))  # not a valid expression: exact only
    assert bad.match("name", "a[b") and not bad.match("name", "xa[by")


def test_labels_are_all_required():
    f = parse_filters(["label=a", "label=b=2"], ("label",))
    assert f.labels({"a": "", "b": "2"})
    assert not f.labels({"a": "1"}) and not f.labels({"a": "1", "b": "3"}) and not f.labels({})
    assert parse_filters([], ("label",)).labels({})


def test_prune_labels_with_negation():
    f = parse_filters(["label!=keep"], ("label", "label!"))
    assert f.prune_labels({}) and f.prune_labels({"other": "1"}) and not f.prune_labels({"keep": "x"})
    g = parse_filters(["label=env=test", "label!=keep=yes"], ("label", "label!"))
    assert g.prune_labels({"env": "test", "keep": "no"}) and not g.prune_labels({"env": "test", "keep": "yes"})
    assert not g.prune_labels({"env": "prod"})


def test_boolean_filter():
    assert parse_filters(["dangling=true"], ("dangling",)).boolean("dangling") is True
    assert parse_filters(["dangling=0"], ("dangling",)).boolean("dangling") is False
    assert parse_filters([], ("dangling",)).boolean("dangling") is None
    for bad in (["dangling=maybe"], ["dangling=true", "dangling=false"]):
        with pytest.raises(InvalidArgumentError, match="invalid filter 'dangling="):
            parse_filters(bad, ("dangling",)).boolean("dangling")


def test_engine_api_filter_documents():
    assert filter_items({"label": {"a=1": True, "b": True, "off": False}, "name": ["web"]}) == [
        "label=a=1",
        "label=b",
        "name=web",
    ]
    with pytest.raises(InvalidArgumentError, match="invalid filter 'name'"):
        filter_items({"name": "web"})


def test_glob_as_go_path_match():
    assert glob_match("bb*", "bb:1") and glob_match("b?:1", "bb:1") and glob_match("[ab]b:[0-9]", "bb:1")
    assert not glob_match("*", "acme/x") and glob_match("*/*", "acme/x") and glob_match("acme/*", "acme/x")
    assert glob_match("[^c]b:1", "bb:1") and not glob_match("[!b]b:1", "bb:1")
    assert glob_match("a\\*", "a*") and not glob_match("a\\*", "ab")


def test_reference_matches_name_with_tag_or_name_alone():
    assert reference_match("bb", "bb:1") and reference_match("bb:1", "bb:1") and not reference_match("bb:2", "bb:1")
    assert reference_match("*:1", "bb:1") and reference_match("acme/*", "acme/x:2")
    assert reference_match("localhost:5000/x", "localhost:5000/x:1")
    assert not reference_match("localhost", "localhost:5000/x")


def test_port_filter():
    assert port_filter("publish", "80") == {"80/tcp"}
    assert port_filter("expose", "8000-8002/udp") == {"8000/udp", "8001/udp", "8002/udp"}
    with pytest.raises(InvalidArgumentError, match="filter for 'publish' should not contain ':'"):
        port_filter("publish", "8080:80")
    for bad in ("x", "0", "90-80", "1-x"):
        with pytest.raises(InvalidArgumentError, match="error while looking up for expose"):
            port_filter("expose", bad)


def test_until_with_a_zone_offset():
    now = 1_800_000_000.0
    assert parse_until("2023-11-14T23:13:20+01:00", now) == 1_700_000_000.0
    assert parse_until("2023-11-14T22:13:20.5Z", now) == 1_700_000_000.0
    assert parse_until("90s", now) == now - 90


# -- KEY=VALUE files ----------------------------------------------------------------


def test_env_file_follows_the_docker_cli():
    data = (
        b"\xef\xbb\xbf# a comment\n"
        b"\n"
        b"   A=1\n"
        b'QUOTED="two words"  \n'
        b"SINGLE='x'\n"
        b"HASH=a # not a comment\n"
        b"EMPTY=\n"
        b"EQ=a=b\n"
        b"FROM_CALLER\n"
        b"UNSET\n"
        b"\t# indented comment\r\n"
        b"CRLF=y\r\n"
    )
    entries = parse_kv_lines(data, "f.env", {"FROM_CALLER": "c"}.get)
    assert entries == [
        ("A", "1"),
        ("QUOTED", '"two words"  '),
        ("SINGLE", "'x'"),
        ("HASH", "a # not a comment"),
        ("EMPTY", ""),
        ("EQ", "a=b"),
        ("FROM_CALLER", "c"),
        ("UNSET", None),
        ("CRLF", "y"),
    ]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"A B=1\n", "poorly formatted environment: variable 'A B' contains whitespaces"),
        (b"A =1\n", "poorly formatted environment: variable 'A ' contains whitespaces"),
        (b"ok=1\n=x\n", "poorly formatted environment: no variable name on line '=x'"),
        (b"ok=1\nA=\xff\n", "env file f.env contains invalid utf8 bytes at line 2"),
    ],
)
def test_bad_env_files_name_the_line(data, message):
    with pytest.raises(InvalidArgumentError) as exc:
        parse_kv_lines(data, "f.env")
    assert exc.value.message == message


def test_env_from_files_in_order_and_unset_keys_dropped(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("A=1\nB=1\nHOME_DIR\nNOPE\n")
    two.write_text("B=2\n")
    assert env_from_files([str(one), str(two)], {"HOME_DIR": "/h"}) == ["A=1", "B=1", "HOME_DIR=/h", "B=2"]
    with pytest.raises(InvalidArgumentError, match=f"open {tmp_path}/missing: no such file or directory"):
        env_from_files([str(tmp_path / "missing")], {})


def test_labels_from_files_then_flags(tmp_path):
    path = tmp_path / "labels"
    path.write_text("# team labels\na=file\nb=file\nbare\n")
    assert labels_from([str(path)], ["b=flag", "c", "d=x=y"]) == {
        "a": "file",
        "b": "flag",
        "bare": "",
        "c": "",
        "d": "x=y",
    }
    for bad, message in (("=x", "invalid label '=x': empty name"), ("a b=1", "label must not contain whitespace")):
        with pytest.raises(InvalidArgumentError, match=message):
            labels_from([], [bad])
