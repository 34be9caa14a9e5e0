"""Every path under the store root and the runroot comes from Paths."""

from __future__ import annotations

from overlayctl.paths import Paths, cgroup_dir
from overlayctl.runtime.cgroups.cgroup import Cgroup
from overlayctl.runtime.cgroups.freezer import Freezer
from overlayctl.runtime.cgroups.layout import Layout

CID = "c" * 64


def test_store_and_runroot_layout():
    p = Paths("/s", "/r")
    assert p.container_log(CID) == f"/s/containers/{CID}/{CID}-json.log"
    assert p.attach_socket(CID) == f"/r/containers/{CID}.sock"
    assert p.run_dir(CID) == f"/r/containers/{CID}"
    assert p.network_lock(CID) == f"/r/containers/{CID}/network.lock"
    assert p.run_state(CID) == f"/r/containers/{CID}.json"
    assert p.blobs == "/s/blobs/sha256" and p.blob_sources == "/s/blobs/blob-sources.json"
    assert p.backups == "/s/backups"
    assert p.kept_after_restore("layers") == "/s/kept-after-restore/layers"
    assert p.init_diff == "/s/init/diff"
    assert p.layer_lease("sha256:ab") == "/s/leases/ab"


def test_a_containers_cgroup_dir_is_spelt_once():
    assert cgroup_dir("/sys/fs/cgroup", CID) == f"/sys/fs/cgroup/overlayctl/{CID}"
    layout = Layout(1, v1={"memory": "/m", "pids": "/p"}, freezer="/f")
    group = Cgroup(CID, layout)
    assert group.dirs == [f"/m/overlayctl/{CID}", f"/p/overlayctl/{CID}"]
    assert Freezer(CID, layout).dir == f"/f/overlayctl/{CID}"
