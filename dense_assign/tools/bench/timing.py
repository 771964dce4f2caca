"""Timing and peak memory of one callable, on CPU or CUDA (the benchmark's measurements).

Peak extra memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before the
call; on CPU the peak of the running sum of the CPU allocator's allocations and frees during the
call, recorded by ``torch.profiler.profile(profile_memory=True)`` in a separate (untimed) call.
Both count tensors only (what the call allocates beyond its inputs), not the allocator's cache
or the process's other memory.
"""

import contextlib
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

#: The memory measurement used on CPU (written into the JSON).
CPU_MEMORY_METHOD = (
    "torch.profiler profile_memory: peak of the running sum of CPU allocator allocations/frees "
    "during one call (tensors only)"
)
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated minus memory_allocated before the call"


def _sync(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_times(
    fns: Sequence[Callable[[], object]], device, repeats: int, warmup: int
) -> List[float]:
    """Median wall time (seconds) of each of ``fns`` over ``repeats`` calls after ``warmup`` calls,
    the functions called in turn (a, b, a, b, ...): with two, both medians see the same drift of
    the machine's speed, so their ratio does not carry it (``benchmark --paired``)."""
    for _ in range(warmup):
        for fn in fns:
            out = fn()
            del out
    _sync(device)
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for fn, spent in zip(fns, times):
            _sync(device)
            start = time.perf_counter()
            out = fn()
            _sync(device)
            spent.append(time.perf_counter() - start)
            del out
    return [statistics.median(t) for t in times]


def median_time(fn: Callable[[], object], device, repeats: int, warmup: int) -> float:
    """Median wall time (seconds) of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return median_times([fn], device, repeats, warmup)[0]


def mb(nbytes: Optional[int]) -> Optional[float]:
    """Bytes as MiB (None stays None: not measured)."""
    return None if nbytes is None else nbytes / 2**20


def _profiled_peak(prof) -> Optional[int]:
    """Peak of the running sum of allocation sizes (frees are negative) in a profile."""
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except Exception:  # API of torch's profiler not available
        return None
    allocs, stack = [], list(roots)
    while stack:
        ev = stack.pop()
        stack.extend(ev.children)
        extra = getattr(ev, "extra_fields", None)
        if type(extra).__name__ == "_ExtraFields_Allocation" and extra.device.type == "cpu":
            allocs.append((ev.start_time_ns, int(extra.alloc_size)))
    allocs.sort(key=lambda x: x[0])
    running = peak = 0
    for _, size in allocs:
        running += size
        peak = max(peak, running)
    return peak


def peak_extra_memory(fn: Callable[[], object], device) -> Optional[int]:
    """Bytes allocated at the peak of one ``fn()`` call beyond what existed before (see the module
    doc); None when it cannot be measured."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with native_stderr_silenced():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
    return _profiled_peak(prof)


def op_breakdown(fn: Callable[[], object], device, top: int) -> Dict:
    """Where the time of one ``fn()`` call goes: ``torch.profiler``'s operators by self time
    (device time on CUDA, CPU time elsewhere), the ``top`` first, with their share of the call's
    total self time. Under the profiler every op costs a little more, so the total exceeds the
    call's timed median; the shares are what the breakdown is for."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with native_stderr_silenced():
        with profile(activities=activities) as prof:
            out = fn()
            _sync(device)
            del out
    events = list(prof.key_averages())

    def self_us(event) -> float:
        if not cuda:
            return float(event.self_cpu_time_total)
        # the attribute's name changed from self_cuda_time_total in torch 2.4
        return float(getattr(event, "self_device_time_total", event.self_cuda_time_total))

    total = sum(self_us(e) for e in events)
    events.sort(key=self_us, reverse=True)
    ops = [
        {
            "op": e.key,
            "self_ms": self_us(e) / 1e3,
            "share": self_us(e) / total if total > 0 else 0.0,
            "calls": int(e.count),
        }
        for e in events[: max(0, top)]
    ]
    return {"clock": "device" if cuda else "cpu", "total_ms": total / 1e3, "ops": ops}


@contextlib.contextmanager
def native_stderr_silenced():
    """Redirect the process's stderr (fd 2) to /dev/null: kineto prints two lines
    ("profiler_start" / "profiler_stop") from C++ on every profiled call, whatever its log level."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreter)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
