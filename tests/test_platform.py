import json
import os
import platform as pyplatform
import subprocess
import sys

import pytest

from jpeg_jax import platform


def test_configure_xla_keeps_user_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3 --foo=1")
    flags = platform.configure_xla(host_device_count=8)
    assert "--xla_force_host_platform_device_count=3" in flags and "--foo=1" in flags
    assert "--xla_force_host_platform_device_count=8" not in flags
    assert "--xla_cpu_experimental_ynn_fusion_type=" in flags.split()
    assert os.environ["XLA_FLAGS"] == flags


def test_configure_xla_respects_user_ynn_setting(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=conv")
    flags = platform.configure_xla()
    assert flags == "--xla_cpu_experimental_ynn_fusion_type=conv"


def test_tests_run_with_flags():
    import jax

    assert len(jax.devices()) == 8


def test_huge_pages_environment_merges_and_respects_user():
    env = platform.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"
    assert platform.huge_pages_environment(env) is None  # complete: no second restart
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert platform.huge_pages_environment(mine) is None  # the user's value wins
    off, on = {platform.HUGE_PAGES_ENV: "0"}, {platform.HUGE_PAGES_ENV: "1"}
    assert platform.huge_pages_environment(off) is None
    assert platform.huge_pages_environment({}, default=False) is None
    assert platform.huge_pages_environment(on, default=False) is not None
    with pytest.raises(ValueError, match="JPEG_JAX_HUGE_PAGES='yes'"):
        platform.huge_pages_environment({platform.HUGE_PAGES_ENV: "yes"})


# Restarts via the function under test, then frees and re-touches a 256 MB block in a worker
# thread: the block is mmapped and munmapped, so the second touch faults it all back in, with
# glibc's defaults in 4 KiB pages (65,536 faults), with the tunable in 2 MiB ones (~128).
_CHILD = """
import ctypes, json, os, resource, sys, threading
from jpeg_jax import platform
platform.restart_with_huge_pages(default=os.environ["CHILD_DEFAULT"] == "1")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n, faults = 256 << 20, []
def touch():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
def worker():
    touch()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
t = threading.Thread(target=worker)
t.start()
t.join()
print(json.dumps([faults[0], os.getpid(), sys.argv[1:], os.environ.get("GLIBC_TUNABLES", "")]))
"""


def _transparent_huge_pages() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unavailable"


@pytest.mark.skipif(
    sys.platform != "linux"
    or pyplatform.libc_ver()[0] != "glibc"
    or tuple(map(int, pyplatform.libc_ver()[1].split(".")[:2])) < (2, 35),
    reason="the glibc.malloc.hugetlb tunable needs glibc 2.35+",
)
@pytest.mark.skipif(
    _transparent_huge_pages() not in ("madvise", "always"),
    reason=f"transparent huge pages: {_transparent_huge_pages()}",
)
def test_restart_with_huge_pages_faults_large_blocks_in_huge_pages(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "CHILD_DEFAULT")}
    base.pop(platform.HUGE_PAGES_ENV, None)
    results = {}
    for name, extra in {
        "default_on": {"CHILD_DEFAULT": "1"},
        "default_off": {"CHILD_DEFAULT": "0"},
        "forced_off": {"CHILD_DEFAULT": "1", platform.HUGE_PAGES_ENV: "0"},
        "forced_on": {"CHILD_DEFAULT": "0", platform.HUGE_PAGES_ENV: "1"},
    }.items():
        proc = subprocess.Popen(
            [sys.executable, "-u", str(script), "a b", "--x=1"],
            env={**base, **extra},
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        faults, pid, argv, tunables = json.loads(out)
        assert pid == proc.pid and argv == ["a b", "--x=1"]  # the same process, same arguments
        results[name] = faults, tunables
    for name in ("default_off", "forced_off"):  # glibc's defaults: every page faults again
        assert results[name][0] > 60_000 and results[name][1] == "", results
    for name in ("default_on", "forced_on"):
        assert results[name][0] < 8_000 and results[name][1] == "glibc.malloc.hugetlb=1", results
