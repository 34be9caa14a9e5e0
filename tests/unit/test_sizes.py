"""The one parser of Docker's sizes, and every option that takes a size
reading the same spellings through it."""

from __future__ import annotations

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.cgroups.limits import parse_limits
from overlayctl.supervise import logs
from overlayctl.util.sizes import parse_size
from overlayctl.volumes import options as volumes

GiB = 1 << 30


@pytest.mark.parametrize(
    "text, size",
    [
        ("1GiB", GiB),
        ("1gb", GiB),
        ("1G", GiB),
        ("1 GB", GiB),
        ("512m", 512 << 20),
        ("512M", 512 << 20),
        ("64kb", 64 << 10),
        ("4096b", 4096),
        ("4096", 4096),
        ("1e3", 1000),
        ("1e3k", 1000 << 10),
        ("1.5g", 3 << 29),
        (".5k", 512),
        ("1t", 1 << 40),
        ("1p", 1 << 50),
        ("0", 0),
    ],
)
def test_sizes_read_as_docker_reads_them(text, size):
    assert parse_size(text, "--x") == size


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "invalid size: ''"),
        ("-1", "invalid size: '-1'"),
        ("12x", "invalid suffix: 'x'"),
        ("1.5.5", "invalid size: '1.5.5'"),
        ("m", "invalid size: 'm'"),
        ("1kk", "invalid suffix: 'kk'"),
        ("1bb", "invalid suffix: 'bb'"),
        ("1_000", "invalid size: '1_000'"),
        ("nan", "invalid size: 'nan'"),
        ("1e999", "too large"),
    ],
)
def test_bad_sizes_are_one_line_errors_naming_the_option(text, why):
    with pytest.raises(InvalidArgumentError) as err:
        parse_size(text, "--shm-size")
    assert str(err.value) == f'invalid argument "{text}" for "--shm-size" flag: {why}'


# Each option that takes a size, as a function of the spelling.
OPTIONS = {
    "--memory": lambda text: parse_limits(text, None, None, None, None, host_cpus=1).memory,
    "--memory-swap": lambda text: parse_limits("6m", text, None, None, None, host_cpus=1).memory_swap,
    "--tmpfs size=": lambda text: volumes.parse_tmpfs_option(f"/x:size={text}").tmpfs_size,
    "--mount tmpfs-size=": lambda text: (
        volumes.parse_mount_option(f"type=tmpfs,target=/x,tmpfs-size={text}").tmpfs_size
    ),
    "--log-opt max-size=": logs.parse_max_size,
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("text", ["1GiB", "1gb", "1G", "1024m", "1e3m", "0.5g", "1048576k"])
def test_every_option_takes_the_same_spellings(option, text):
    assert OPTIONS[option](text) == parse_size(text, option) >= 500 << 20


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("text", ["12x", "1.5.5", "lots"])
def test_every_option_refuses_the_same_spellings(option, text):
    with pytest.raises(InvalidArgumentError):
        OPTIONS[option](text)
