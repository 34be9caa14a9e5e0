"""The corpus files that need no network beyond the host build, unchanged.

Every file of tests/data/dockerfiles parses (tests/unit/test_dockerfile_corpus.py);
the ones below are those whose steps fetch nothing (no package manager, no
download). Their base images cannot be pulled here, so the busybox image
stands in for each under the name the file asks for; the context holds
the files their COPY lines name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dockerfiles"

# file -> (its base image's name, context files with their content)
BUILDABLE = {
    "healthcheck-mongo.Dockerfile": ("mongo", {"docker-healthcheck": "#!/bin/sh\nexit 0\n"}),
    "healthcheck-postgres.Dockerfile": ("postgres", {"docker-healthcheck": "#!/bin/sh\nexit 0\n"}),
    "healthcheck-redis.Dockerfile": ("redis", {"docker-healthcheck": "#!/bin/sh\nexit 0\n"}),
    "healthcheck-mysql-mariadb.Dockerfile": ("mariadb", {}),
    "golang-1.9-onbuild.Dockerfile": ("golang:1.9", {}),
    "ruby-2.5-onbuild.Dockerfile": ("ruby:2.5", {}),
}


def _config(cli, image: str) -> dict:
    return json.loads(cli.ok("image", "inspect", image))[0]["Config"]


@pytest.mark.parametrize("name", sorted(BUILDABLE))
def test_corpus_files_that_fetch_nothing_build(cli, busybox_tar, tmp_path, name):
    base, files = BUILDABLE[name]
    cli.ok("import", str(busybox_tar), base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(CORPUS / name, ctx / "Dockerfile")
    for file_name, content in files.items():
        (ctx / file_name).write_text(content)
        (ctx / file_name).chmod(0o755)
    if name == "ruby-2.5-onbuild.Dockerfile":
        # Its RUN calls bundle, which busybox has not: a stand-in on PATH.
        (ctx / "Dockerfile").write_text((CORPUS / name).read_text().replace("FROM ruby:2.5", "FROM ruby-base"))
        stand_in = tmp_path / "stand-in"
        stand_in.mkdir()
        (stand_in / "bundle").write_text("#!/bin/sh\nexit 0\n")
        (stand_in / "bundle").chmod(0o755)
        (stand_in / "Dockerfile").write_text("FROM ruby:2.5\nCOPY bundle /usr/local/bin/bundle\n")
        cli.ok("build", "--network", "none", "-t", "ruby-base", str(stand_in))
    cli.ok("build", "--network", "none", "-t", "corpus:1", str(ctx))
    config = _config(cli, "corpus:1")
    text = (CORPUS / name).read_text()
    if "HEALTHCHECK CMD" in text:
        test = json.loads(text.split("HEALTHCHECK CMD", 1)[1].splitlines()[0])
        assert config["Healthcheck"]["Test"] == ["CMD", *test]
    if "ONBUILD" in text:
        triggers = [line.split("ONBUILD ", 1)[1] for line in text.splitlines() if line.startswith("ONBUILD ")]
        assert config["OnBuild"] == triggers
    for file_name in files:
        # What the COPY lines brought is in the image, executable.
        assert cli.ok("run", "--rm", "--network", "none", "corpus:1", "ls", "-l", f"/usr/local/bin/{file_name}")
