"""The kernel-file vocabulary (collectors.kernelfiles) and the safe root-relative reader (collectors.rootfs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collectors.errors import CollectorError
from collectors.kernelfiles import (
    bracketed,
    format_cpu_list,
    format_cpu_mask,
    parse_cpu_list,
    parse_cpu_mask,
    parse_kv,
    parse_meminfo,
    selector_value,
    selector_words,
)
from collectors.rootfs import RootReader


def test_cpu_lists_as_the_kernel_writes_them() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpu_list("") == () and parse_cpu_list("\n") == ()
    assert parse_cpu_list("3,1,1-2") == (1, 2, 3)
    with pytest.raises(ValueError, match="bad cpu range"):
        parse_cpu_list("3-1")


@pytest.mark.parametrize("bad", ["", "0,,1", "a", "1-", "-1", "0-65536", "0, 1", "3-1"])
def test_strict_cpu_lists_refuse_what_a_user_may_not_give(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(bad, strict=True)


def test_cpu_list_and_mask_round_trip() -> None:
    assert format_cpu_list({5, 0, 1, 2}) == "0-2,5" and format_cpu_list(()) == ""
    assert parse_cpu_list(format_cpu_list((0, 2, 3, 7)), strict=True) == (0, 2, 3, 7)
    assert format_cpu_mask((0, 1)) == "3" and parse_cpu_mask("3\n") == (0, 1)
    assert parse_cpu_mask("1,00000000") == (32,)


def test_meminfo_selectors_and_key_values() -> None:
    mem = parse_meminfo("MemTotal:       24684096 kB\nHugePages_Total:       0\nbogus line\n")
    assert mem == {"MemTotal": 24684096 * 1024, "HugePages_Total": 0}
    assert parse_meminfo("Node 0 MemTotal:       6121688 kB\n") == {"MemTotal": 6121688 * 1024}
    assert bracketed("none [mq-deadline] kyber") == "mq-deadline" and bracketed("bbr\n") is None
    assert selector_value("always [madvise] never\n") == "madvise" and selector_value("bbr\n") == "bbr"
    with pytest.raises(ValueError, match="cannot tell"):
        selector_value("reno cubic")
    assert selector_words("[none] mq-deadline \n") == ("none", "mq-deadline")
    assert parse_kv("nr_periods 4\nthrottled_time x\nbad\n", int) == {"nr_periods": 4}


def test_reader_refuses_escapes_and_reads_byte_exact(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "proc/sys/vm").mkdir(parents=True)
    (root / "proc/sys/vm/swappiness").write_bytes(b"60\n\xff")
    os.symlink("/etc", root / "proc/sys/vm/evil")
    os.symlink("../../../../outside", root / "proc/sys/vm/dangling")
    fs = RootReader(root)
    assert fs.read("proc/sys/vm/swappiness") == "60\n\xff" and fs.read_bytes("/proc/sys/vm/swappiness") == b"60\n\xff"
    assert fs.exists("proc/sys/vm/swappiness") and fs.is_dir("proc/sys") and not fs.exists("proc/sys/vm/none")
    assert fs.listdir("proc/sys/vm") == ["dangling", "evil", "swappiness"] and fs.listdir("proc/none") == []
    assert fs.readlink("proc/sys/vm/evil") == "/etc"  # read, never followed
    for rel in ("../x", "proc/../../etc/passwd", "proc/sys/vm/evil/passwd", "proc/sys/vm/dangling", "a\x00b", "", "/",
                "proc/./sys"):
        with pytest.raises(CollectorError):
            fs.path(rel)
    with pytest.raises(CollectorError, match="cannot read"):
        fs.read("proc/sys/vm/none")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("proc/sys/vm/none")
    with pytest.raises(FileNotFoundError):
        fs.listdir("proc/none", strict=True)
    assert fs.rel(root / "proc/sys") == "proc/sys"
    with pytest.raises(CollectorError):
        fs.rel(tmp_path)


def test_actuators_sysroot_is_the_writing_side_with_its_own_errors(tmp_path: Path) -> None:
    from actuators import ActuatorError, SysRoot
    from actuators.errors import UnsafePath

    (tmp_path / "f").write_text("1\n")
    root = SysRoot(tmp_path)
    assert isinstance(root, RootReader) and root == SysRoot(str(tmp_path)) and os.fspath(root) == str(root.root)
    with pytest.raises(UnsafePath):
        root.path("../f")
    with pytest.raises(ActuatorError, match="cannot read"):
        root.read("missing")
    root.write("f", "2")
    assert root.read("f") == "2"
