"""Host memory: glibc keeps freed memory on request, and the sampler still sees what a step allocates."""

from __future__ import annotations

import platform
import time

import pytest
import torch

from mixmim.engine.host_memory import HostMemorySampler, heap_in_use, keep_freed_memory, resident_set_size

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
MIB = 2**20


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_kept_heap_stays_resident_but_heap_in_use_falls_back():
    assert keep_freed_memory()
    before_in_use = heap_in_use()
    big = torch.ones(64 * MIB // 4)  # 64 MiB, touched: resident
    assert heap_in_use() - before_in_use >= 63 * MIB
    grown = resident_set_size()
    del big
    assert heap_in_use() - before_in_use < 8 * MIB  # freed: no longer in use ...
    assert resident_set_size() > grown - 8 * MIB  # ... but kept for reuse (no munmap, no trim)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_sampler_sees_a_transient_allocation_between_marks():
    with HostMemorySampler(interval_s=0.001) as sampler:
        assert sampler.kind == "heap_in_use"
        sampler.mark()
        before = sampler.read()
        transient = torch.ones(32 * MIB // 4)
        time.sleep(0.05)
        del transient
        peak = sampler.mark()
    assert peak - before >= 31 * MIB
    assert sampler.read() - before < 8 * MIB


def test_sampler_falls_back_to_the_resident_set_without_glibc(monkeypatch):
    import mixmim.engine.host_memory as host_memory

    monkeypatch.setattr(host_memory, "heap_in_use", lambda: None)
    sampler = HostMemorySampler()
    assert sampler.kind == "rss"
    if platform.system() == "Linux":
        assert sampler.read() > 0


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_trim_hands_kept_memory_back():
    from mixmim.engine.host_memory import trim_heap

    assert keep_freed_memory()
    big = torch.ones(64 * MIB // 4)
    kept = resident_set_size()
    del big
    trim_heap()
    assert resident_set_size() < kept - 32 * MIB
