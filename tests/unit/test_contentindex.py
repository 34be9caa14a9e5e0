"""A layer's content index records every entry, and compare names each
entry that changed, went or came."""

from __future__ import annotations

import os

from overlayctl.layer import contentindex


def make_layer(tmp_path):
    layer = tmp_path / "layer"
    diff = layer / "diff"
    (diff / "etc").mkdir(parents=True)
    (diff / "etc" / "conf").write_text("a=1\n")
    os.link(diff / "etc" / "conf", diff / "hard")
    os.symlink("etc/conf", diff / "link")
    os.mknod(diff / "wh", 0o20000 | 0o600, 0)  # an overlay whiteout
    os.setxattr(diff / "etc", "trusted.overlay.opaque", b"y")
    recorded = contentindex.write_index(str(layer))
    return layer, diff, recorded


def test_an_untouched_layer_compares_clean(tmp_path):
    layer, diff, recorded = make_layer(tmp_path)
    assert contentindex.compare(str(layer), recorded) == []
    lines = (layer / "content").read_bytes().splitlines()
    assert [line.split(b"\0")[0] for line in lines] == [b".", b"etc", b"etc/conf", b"hard", b"link", b"wh"]
    # Times are not content.
    os.utime(diff / "etc" / "conf", (1, 1))
    assert contentindex.compare(str(layer), recorded) == []


def test_every_kind_of_change_is_named(tmp_path):
    layer, diff, recorded = make_layer(tmp_path)
    (diff / "etc" / "conf").write_text("a=2\n")  # content, seen through both hard links
    os.removexattr(diff / "etc", "trusted.overlay.opaque")
    os.chmod(diff / "wh", 0o644)
    os.unlink(diff / "link")
    (diff / "new").write_text("")
    assert contentindex.compare(str(layer), recorded) == [
        "changed: etc",
        "changed: etc/conf",
        "changed: hard",
        "missing: link",
        "added: new",
        "changed: wh",
    ]


def test_a_changed_index_is_caught(tmp_path):
    layer, _diff, recorded = make_layer(tmp_path)
    with open(layer / "content", "ab") as f:
        f.write(b"x\0f 644 0 0 0 0 - -\n")
    assert contentindex.compare(str(layer), recorded) == ["its content index does not match the catalog's record"]
    os.unlink(layer / "content")
    assert contentindex.compare(str(layer), recorded) == ["its content index is missing"]
