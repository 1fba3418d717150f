import os

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
