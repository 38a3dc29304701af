"""Measuring speed on a small, shared, noisy machine (DESIGN.md section 6).

Used by ``bench/report.py`` and ``python -m fastnn``, and by the pytest-benchmark
suite for what it times. It ships in the package, so it needs neither pytest nor
torch: torch is imported inside functions, only when a torch contender is asked
for and torch is installed.

The rules it follows, each learnt on 2-vCPU shared machines:

- Contenders are timed interleaved, round by round, in one process (with the
  order rotated every round), and ratios come from that one run, never from
  absolute times of different runs.
- Idle worker threads spin after a call and steal the next contender's core:
  NumPy's OpenBLAS for 2**28 cycles (~0.1 s) unless ``OPENBLAS_THREAD_TIMEOUT``
  was set before NumPy loaded (bench/report.py sets it to 20, ~0.4 ms: warm
  between the BLAS calls inside one reference call, asleep before the next
  sample), OpenMP (fastnn's and PyTorch's, both libgomp) for a few ms. So every
  sample is preceded by a short pause (`PAUSE_S`), and a contender that leaves
  spinning workers behind asks for a longer one (`Contender.settle`). OpenMP's
  own spinning (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) is left at its default:
  it is what users get, it helps fastnn and PyTorch alike between the calls of
  one sample, and the pause outlasts it.
- Another tenant sometimes takes a whole core. A quick float32 GEMM on all
  cores (`Probe`) runs before every sample; a sample is clean when the probes
  just before and just after it reach `CLEAN_FRACTION` of the best probe of the
  run and, where Linux keeps scheduler statistics, our threads waited for a
  CPU during no more than `STALL_LIMIT` of the sample itself: a tenant that
  comes and goes within tens of ms slips between two probes, not past the
  scheduler's count. Dirty samples are dropped, counted and retaken.
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import fastnn
from fastnn import _kernels
from fastnn._cases import TOLERANCES, ConvCase, PoolCase, RNNCase
from fastnn._validate import ConvGeometry, conv_geometry

__all__ = [
    "PAUSE_S", "CLEAN_FRACTION", "STALL_LIMIT", "MODES", "Contender", "Timing", "Reading", "Probe",
    "measure", "paired_ratio", "usable_cores", "set_threads", "torch_available", "geometry",
    "grad_output",
    "conv_call", "reference_settle", "gemm_yardstick", "check_case", "format_table", "Progress",
    "pool_grad_output", "pool_call", "copy_yardstick",
    "RNN_TOLERANCE", "rnn_arrays", "rnn_module", "rnn_result_names", "rnn_call",
    "rnn_step_flops", "rnn_yardstick", "rnn_max_error", "check_rnn_case",
]

# Pause before every sample and probe: outlasts libgomp's default spin (~5-10 ms).
PAUSE_S = 0.015
# A probe below this fraction of the best one means another tenant holds a core.
CLEAN_FRACTION = 0.85
# A sample during which our threads waited for a CPU longer than this share of
# it, plus a little, was disturbed (a tenant on a core: 50-100%). The little is
# for waking sleeping threads, which on a virtual machine takes tens of us each
# and counts as waiting: a 3 ms sample that wakes a BLAS worker a few times
# must not count as disturbed.
STALL_LIMIT = 0.03
STALL_SLACK_S = 0.001
# A slow CPU clock bounds how long OpenBLAS workers may keep spinning.
_MIN_CLOCK_HZ = 2.0e9
# "fwd": forward only; "fwdbwd": forward then the backward of all three gradients.
MODES = ("fwd", "fwdbwd")



# --------------------------------------------------------------------------- threads


def usable_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is optional everywhere)."""
    try:
        import torch  # noqa: F401
    except Exception:  # not installed, or installed but broken: skip it alike
        return False
    return True


class _NumpyBlas:
    """The thread count of NumPy's BLAS, through threadpoolctl when it is installed.

    Only NumPy's own library is touched: fastnn's bundled OpenBLAS must stay
    pinned to one thread (DESIGN.md section 2), and threadpoolctl sees both.
    """

    def __init__(self) -> None:
        self._libs: Optional[list] = None

    def _controllers(self) -> list:
        if self._libs is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._libs = []
                return self._libs
            numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
            self._libs = [lib for lib in ThreadpoolController().lib_controllers
                          if lib.user_api == "blas" and
                          # numpy/ itself or the wheel's numpy.libs/
                          os.path.abspath(lib.filepath).startswith(numpy_dir)]
        return self._libs

    def set(self, n: int) -> None:
        for lib in self._controllers():
            lib.set_num_threads(n)


_numpy_blas = _NumpyBlas()


def set_threads(n: int) -> None:
    """Give fastnn, PyTorch (if loaded) and NumPy's BLAS `n` threads each.

    All three are set together so that every contender of a comparison runs
    with the same number of threads.
    """
    fastnn.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    _numpy_blas.set(n)


def _numpy_settle() -> float:
    """How long NumPy's OpenBLAS workers may spin after a call, in seconds."""
    try:
        exponent = int(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "28"))
    except ValueError:
        exponent = 28
    # OpenBLAS clamps the setting to [4, 30]; it only counts if set before NumPy
    # loaded, which callers that set it (bench/report.py) do.
    exponent = min(max(exponent, 4), 30)
    return max(PAUSE_S, 2.0 ** exponent / _MIN_CLOCK_HZ)


# --------------------------------------------------------------------------- measuring


class _RunDelay:
    """How long this process's threads were runnable but waiting for a CPU (Linux).

    The scheduler counts it per thread (second field of
    /proc/self/task/<tid>/schedstat, in ns). Any such wait during a sample means
    something competed with the contender for a core: a tenant, or our own
    leftover worker threads still spinning. Where the files do not exist (not
    Linux, no scheduler statistics) snapshots are None and only the probe
    judges the samples.
    """

    def snapshot(self) -> Optional[Dict[str, int]]:
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return None
        waits = {}
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    waits[tid] = int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the thread just ended, or no statistics
        return waits or None

    @staticmethod
    def waited(before: Optional[Dict[str, int]], after: Optional[Dict[str, int]]) -> float:
        """Seconds waited between two snapshots (0 without statistics).

        Per thread, so that a thread ending in between does not count negative.
        """
        if before is None or after is None:
            return 0.0
        return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def _undisturbed(waited: float, seconds: float) -> bool:
    """Whether our threads waited for a CPU no longer than a quiet machine makes them."""
    return waited <= STALL_LIMIT * seconds + STALL_SLACK_S


_run_delay = _RunDelay()


@dataclass
class Contender:
    """One thing to time.

    Attributes
    ----------
    name : str
        Unique within one `measure` call.
    call : callable
        One call of the work; its result is discarded.
    before : callable, optional
        Run (untimed) before each sample, e.g. to set thread counts.
    warmup : bool
        Make one untimed call first and use it to choose how many calls make
        a sample. Without it, a sample is a single call.
    max_time : float
        Stop sampling once this many seconds went into samples (at least one
        sample is always taken): for slow contenders whose ratio is informational.
    settle : float
        Pause after a sample of this contender, before anything else runs,
        for worker threads it leaves spinning (at least `PAUSE_S`).
    """

    name: str
    call: Callable[[], object]
    before: Optional[Callable[[], None]] = None
    warmup: bool = True
    max_time: float = math.inf
    settle: float = PAUSE_S


@dataclass
class Timing:
    """The samples of one contender, in seconds per call."""

    name: str
    clean: List[float] = field(default_factory=list)
    dirty: List[float] = field(default_factory=list)
    number: int = 1
    by_round: Dict[int, float] = field(default_factory=dict)  # every sample, by its round

    @property
    def dropped(self) -> int:
        return len(self.dirty)

    @property
    def trusted(self) -> bool:
        """False when no sample was clean, so the value comes from dirty ones."""
        return bool(self.clean)

    def value(self, stat: str = "median") -> float:
        """The median ("median", "paired") or the best (smallest) clean sample; dirty
        ones if none is clean."""
        samples = self.clean or self.dirty
        if not samples:
            return math.nan
        return min(samples) if stat == "best" else statistics.median(samples)


class Reading(NamedTuple):
    """One probe: its rate (GFLOP/s), its duration and how long our threads waited meanwhile."""

    rate: float
    seconds: float = 0.0
    waited: float = 0.0


class Probe:
    """A fixed batch of float32 GEMMs on all cores: its rate shows whether we have them.

    With 2 threads on 2 cores, a tenant holding one core slows the probe by far
    more than 15% (measured: 190 -> 20-90 GFLOP/s), while the spread of a quiet
    machine stays within it. The probe also catches what the scheduler's
    statistics cannot see: a core taken away by the hypervisor.

    Parameters
    ----------
    threads : int, optional
        Threads of the probe; default all usable cores (a tenant on any core
        must show).
    size, batch : int
        The probe computes `batch` products of `size` x `size` matrices (about
        1.5 ms with 2 threads at 2.6 GHz).
    wait_budget : float
        The longest total time `wait_quiet` may wait over the probe's life: a
        machine that never gets quiet must not make a run endless (its samples
        are then dropped, or flagged when none is clean).
    """

    def __init__(self, threads: Optional[int] = None, size: int = 256, batch: int = 8,
                 wait_budget: float = 120.0) -> None:
        self.threads = threads or usable_cores()
        rng = np.random.default_rng(1)
        self._a = rng.standard_normal((size, size), dtype=np.float32)
        self._b = rng.standard_normal((batch, size, size), dtype=np.float32)
        self._c = np.empty_like(self._b)
        self._flops = 2.0 * batch * size ** 3
        self.best = 0.0
        self.wait_budget = wait_budget
        self.waited = 0.0

    def __call__(self, repeats: int = 3) -> Reading:
        """The best of `repeats` runs (after `PAUSE_S`); updates `best`."""
        before = fastnn.get_num_threads()
        fastnn.set_num_threads(self.threads)
        time.sleep(PAUSE_S)
        fastest = math.inf
        w0, t0 = _run_delay.snapshot(), time.perf_counter()
        try:
            for _ in range(repeats):
                t = time.perf_counter()
                _kernels.gemm_batch(self._a, self._b, self._c)
                fastest = min(fastest, time.perf_counter() - t)
        finally:
            fastnn.set_num_threads(before)
        waited = _run_delay.waited(w0, _run_delay.snapshot())
        rate = self._flops / fastest / 1e9
        self.best = max(self.best, rate)
        return Reading(rate, time.perf_counter() - t0, waited)

    def is_clean(self, reading: Reading) -> bool:
        """Near the best rate, and our threads hardly waited for a CPU meanwhile."""
        return (reading.rate >= CLEAN_FRACTION * self.best
                and _undisturbed(reading.waited, reading.seconds))

    def calibrate(self, probes: int = 5) -> float:
        """A few probes to learn the quiet machine's rate; returns the best."""
        for _ in range(probes):
            self()
        return self.best

    def wait_quiet(self, max_wait: float) -> Reading:
        """Probe until the machine looks quiet or `max_wait` seconds passed; the last reading."""
        start = time.perf_counter()
        max_wait = min(max_wait, self.wait_budget - self.waited)
        reading = self()
        while not self.is_clean(reading) and time.perf_counter() - start < max_wait:
            time.sleep(0.05)
            reading = self()
        self.waited += time.perf_counter() - start
        return reading


def _calibrate(contender: Contender, target: float) -> int:
    """Calls per sample: one warm-up call, timed, says how many fill `target` seconds."""
    if not contender.warmup:
        return 1
    if contender.before is not None:
        contender.before()
    t0 = time.perf_counter()
    contender.call()
    elapsed = time.perf_counter() - t0
    return max(1, min(10_000, round(target / max(elapsed, 1e-9))))


def _sample(contender: Contender, number: int) -> Tuple[float, float]:
    """(seconds, seconds our threads waited for a CPU) of `number` back-to-back calls.

    The garbage collector is off meanwhile, as in timeit.
    """
    if contender.before is not None:
        contender.before()
    time.sleep(PAUSE_S)
    call = contender.call
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        w0 = _run_delay.snapshot()
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - t0
        w1 = _run_delay.snapshot()
    finally:
        if gc_was_enabled:
            gc.enable()
    time.sleep(max(0.0, contender.settle - PAUSE_S))
    return elapsed, _run_delay.waited(w0, w1)


class _Sample(NamedTuple):
    name: str
    round: int
    seconds: float  # all calls of the sample
    waited: float
    before: Reading
    after: Reading


def _describe(s: _Sample, number: int, probe: Optional[Probe], clean: bool) -> str:
    """One line about a sample, for `measure`'s log."""
    best = probe.best if probe else math.inf
    return (f"{s.name:<22} {1e3 * s.seconds / number:9.3f} ms/call x{number:<4} waited "
            f"{1e3 * s.waited:7.2f} ms; probes {s.before.rate:.0f}, {s.after.rate:.0f} "
            f"(waited {1e3 * s.before.waited:.2f}, {1e3 * s.after.waited:.2f} ms) of best "
            f"{best:.0f} GFLOP/s: {'clean' if clean else 'DIRTY'}")


def measure(contenders: Sequence[Contender], rounds: int = 7, probe: Optional[Probe] = None,
            target: float = 0.05, min_clean: int = 3, max_extra_rounds: int = 6,
            max_wait: float = 2.0, log: Optional[Callable[[str], None]] = None
            ) -> Dict[str, Timing]:
    """Time the contenders interleaved: one sample of each per round.

    A sample is clean when the probes just before and after it are (see
    `Probe.is_clean`) and our threads waited for a CPU during no more than
    `STALL_LIMIT` of it (plus `STALL_SLACK_S`). Samples are judged at the end,
    against the best probe of the whole run.

    Parameters
    ----------
    contenders : sequence of Contender
    rounds : int
        Samples wanted of each contender (fewer for one whose `max_time` runs out).
    probe : Probe, optional
        Without it every sample counts as clean.
    target : float
        Seconds one sample should last (many calls of a fast contender).
    min_clean : int
        Extra rounds are run, up to `max_extra_rounds`, for contenders with
        fewer clean samples than this (and time left in their `max_time`).
    max_wait : float
        Longest wait, in seconds, for a quiet machine before each sample.
    log : callable, optional
        Given one line per sample (time, waits, probes, verdict), to see why
        samples were dropped.

    Returns
    -------
    dict
        Contender name -> Timing.
    """
    numbers = {c.name: _calibrate(c, target) for c in contenders}
    spent = {c.name: 0.0 for c in contenders}
    taken: List[_Sample] = []

    def clean(s: _Sample) -> bool:
        return probe is None or (probe.is_clean(s.before) and probe.is_clean(s.after)
                                 and _undisturbed(s.waited, s.seconds))

    def wanted(c: Contender, extra: bool) -> bool:
        if spent[c.name] >= c.max_time:  # never true before the first sample
            return False
        return not extra or sum(clean(s) for s in taken if s.name == c.name) < min(min_clean,
                                                                                   rounds)

    quiet = Reading(math.inf)
    reading = probe.wait_quiet(max_wait) if probe else quiet
    for r in range(rounds + (max_extra_rounds if probe else 0)):
        active = [c for c in contenders if wanted(c, extra=r >= rounds)]
        if not active:
            break
        shift = r % len(active)  # rotate, so no contender always follows the same one
        for c in active[shift:] + active[:shift]:
            seconds, waited = _sample(c, numbers[c.name])
            spent[c.name] += seconds
            after = probe.wait_quiet(max_wait) if probe else quiet
            taken.append(_Sample(c.name, r, seconds, waited, reading, after))
            if log is not None:
                log(_describe(taken[-1], numbers[c.name], probe, clean(taken[-1])))
            reading = after

    timings = {c.name: Timing(c.name, number=numbers[c.name]) for c in contenders}
    for s in taken:
        per_call = s.seconds / numbers[s.name]
        (timings[s.name].clean if clean(s) else timings[s.name].dirty).append(per_call)
        timings[s.name].by_round[s.round] = per_call
    return timings


def paired_ratio(slow: Timing, fast: Timing) -> float:
    """The median, over the rounds that timed both, of slow's time over fast's, every
    sample counted, clean or not.

    Two samples of one round were taken seconds apart at most, so a slow phase of
    the machine (on one 2-vCPU VM the same GEMM ran at 64-124 GFLOP/s, in phases
    that dropped 80-95% of the samples) touches both: the ratio holds where the
    clean samples are too few to compare.
    """
    rounds = slow.by_round.keys() & fast.by_round.keys()
    if not rounds:
        return math.nan
    return statistics.median(slow.by_round[k] / fast.by_round[k] for k in rounds)


# --------------------------------------------------------------------------- convolution cases


def geometry(case: ConvCase) -> ConvGeometry:
    """The case's convolution geometry (its output size, GEMM sizes, ...)."""
    o = case.options
    return conv_geometry(case.x_shape, case.w_shape, o.get("stride", 1), o.get("padding", 0),
                         o.get("dilation", 1), o.get("groups", 1), case.dims)


def grad_output(case: ConvCase, seed: int = 1) -> np.ndarray:
    """A random upstream gradient of the case's output shape, in its dtype."""
    shape = geometry(case).output_shape_nd(case.dims)
    return np.random.default_rng(seed).standard_normal(shape).astype(case.dtype)


def _numpy_call(module, case: ConvCase, mode: str, x, w, b, g) -> Callable[[], object]:
    forward = module.conv2d if case.dims == 2 else module.conv1d
    backward = module.conv2d_backward if case.dims == 2 else module.conv1d_backward
    opts = case.options
    if mode == "fwd":
        return lambda: forward(x, w, b, **opts)

    def fwdbwd():
        y = forward(x, w, b, **opts)
        return (y,) + tuple(backward(g, x, w, **opts))
    return fwdbwd


def _torch_call(case: ConvCase, mode: str, x, w, b, g) -> Callable[[], object]:
    import torch
    import torch.nn.functional as F

    conv = F.conv2d if case.dims == 2 else F.conv1d
    opts = case.options
    xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, g))
    if mode == "fwd":
        def forward():
            with torch.no_grad():
                return conv(xt, wt, bt, **opts)
        return forward
    leaves = [t.detach().requires_grad_(True) for t in (xt, wt, bt)]

    def fwdbwd():
        # fresh gradients each call, as fastnn allocates its results
        for t in leaves:
            t.grad = None
        y = conv(*leaves, **opts)
        y.backward(gt)
        return (y.detach(),) + tuple(t.grad for t in leaves)
    return fwdbwd


def conv_call(case: ConvCase, impl: str, mode: str,
              arrays: Optional[Tuple[np.ndarray, ...]] = None) -> Callable[[], object]:
    """One call of the case on an implementation, ready to time.

    Parameters
    ----------
    case : ConvCase
    impl : {'fastnn', 'reference', 'torch'}
    mode : {'fwd', 'fwdbwd'}
        'fwdbwd' runs the forward and then the backward (input, weight and bias
        gradients); with torch, autograd does the backward.
    arrays : tuple, optional
        (x, weight, bias, grad_output); default `case.arrays()` and `grad_output(case)`.

    Returns
    -------
    callable
        Returns the output (fwd) or (output, grad_input, grad_weight, grad_bias),
        as NumPy arrays or, for torch, tensors.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x, w, b, g = arrays if arrays is not None else case.arrays() + (grad_output(case),)
    if impl == "fastnn":
        return _numpy_call(fastnn, case, mode, x, w, b, g)
    if impl == "reference":
        from fastnn import reference

        return _numpy_call(reference, case, mode, x, w, b, g)
    if impl == "torch":
        return _torch_call(case, mode, x, w, b, g)
    raise ValueError(f"impl must be 'fastnn', 'reference' or 'torch', got {impl!r}")


def reference_settle() -> float:
    """`Contender.settle` for the NumPy reference (its BLAS workers may spin on)."""
    return _numpy_settle()


def gemm_yardstick(case: ConvCase) -> Dict[str, Callable[[], object]]:
    """The plain GEMM of the case's sizes: name -> call (its flops are ``case.flops()``).

    ``gemm_batch`` computes c[i] = a @ b[i] for i < N*groups with
    M = C_out/groups, K = C_in/groups*kH*kW and N = out_h*out_w, with the same
    BLAS and OpenMP split as the convolution, but with no im2col: how fast the
    convolution could be if building its columns cost nothing ('sgemm').

    ``gemm_batch`` splits a small batch over column chunks of N; with one image
    and few positions (3x3_512x7_b1: 8 chunks of 6 columns, each repacking all
    of `a`) that is a poor GEMM, so for a batch of one the same product is also
    given transposed, c^T = b^T @ a^T, split over chunks of M instead ('sgemmT').
    Take the faster of the two.
    """
    geo = geometry(case)
    m = geo.out_channels // geo.groups
    k = geo.in_channels // geo.groups * geo.kernel_h * geo.kernel_w
    n = geo.out_h * geo.out_w
    batch = geo.batch * geo.groups
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype(case.dtype)
    b = rng.standard_normal((batch, k, n)).astype(case.dtype)
    c = np.empty((batch, m, n), dtype=case.dtype)
    calls = {"sgemm": lambda: _kernels.gemm_batch(a, b, c)}
    if batch == 1:
        bt = np.ascontiguousarray(b[0].T)        # (N, K), the shared left operand
        at = np.ascontiguousarray(a.T)[None]     # (1, K, M)
        ct = np.empty((1, n, m), dtype=case.dtype)
        calls["sgemmT"] = lambda: _kernels.gemm_batch(bt, at, ct)
    return calls


def _max_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest |a - e| / (rtol*|e| + atol*scale): at most 1 when they agree."""
    tol = TOLERANCES[np.dtype(expected.dtype)]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    bound = tol["rtol"] * np.abs(expected) + tol["atol"] * scale
    return float(np.max(np.abs(np.asarray(actual) - expected) / bound, initial=0.0))


def check_case(case: ConvCase) -> Dict[str, float]:
    """Compare fastnn with the reference on one case, forward and backward.

    Returns
    -------
    dict
        For 'output', 'grad_input', 'grad_weight', 'grad_bias': the largest error
        as a fraction of the allowed one (they agree when every value is <= 1).
    """
    arrays = case.arrays() + (grad_output(case),)
    got = conv_call(case, "fastnn", "fwdbwd", arrays)()
    want = conv_call(case, "reference", "fwdbwd", arrays)()
    names = ("output", "grad_input", "grad_weight", "grad_bias")
    errors = {}
    for name, a, e in zip(names, got, want):
        if a.shape != e.shape or a.dtype != e.dtype:
            errors[name] = math.inf
        else:
            errors[name] = _max_error(a, e)
    return errors


# --------------------------------------------------------------------------- pooling cases


def pool_grad_output(case: PoolCase, seed: int = 1) -> np.ndarray:
    """A random upstream gradient of the pooling case's output shape, in its dtype."""
    return np.random.default_rng(seed).standard_normal(case.output_shape()).astype(case.dtype)


def _numpy_pool_call(module, case: PoolCase, mode: str, x, g) -> Callable[[], object]:
    """fastnn or its reference: the forward, or the forward then the input gradient
    (max pooling keeps its indices for the backward, as a training step does)."""
    o = dict(case.options)
    forward = getattr(module, case.op)
    if mode == "fwd":
        return lambda: forward(x, **o)
    if case.op == "max_pool2d":
        def fwdbwd():
            y, idx = forward(x, return_indices=True, **o)
            return y, module.max_pool2d_backward(g, idx, x.shape)
    elif case.op == "avg_pool2d":
        def fwdbwd():
            return forward(x, **o), module.avg_pool2d_backward(g, x.shape, **o)
    elif case.op == "adaptive_avg_pool2d":
        def fwdbwd():
            return forward(x, **o), module.adaptive_avg_pool2d_backward(g, x.shape)
    else:
        def fwdbwd():
            return forward(x, **o), module.spatial_pyramid_pool_backward(g, x, **o)
    return fwdbwd


def _torch_pool_forward(case: PoolCase):
    """The case's forward in torch; SPP is its concatenated adaptive pools."""
    import torch
    import torch.nn.functional as F

    o = dict(case.options)
    if case.op != "spatial_pyramid_pool":
        op = getattr(F, case.op)
        return lambda t: op(t, **o)
    pool = F.adaptive_max_pool2d if o.get("mode", "max") == "max" else F.adaptive_avg_pool2d
    levels = o.get("levels", (1, 2, 4))
    return lambda t: torch.cat([pool(t, l).reshape(t.shape[0], -1) for l in levels], dim=1)


def _torch_pool_call(case: PoolCase, mode: str, x, g) -> Callable[[], object]:
    import torch

    forward = _torch_pool_forward(case)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return forward(xt)
        return run
    leaf = xt.detach().requires_grad_(True)

    def fwdbwd():
        leaf.grad = None  # a fresh gradient each call, as fastnn allocates its results
        y = forward(leaf)
        y.backward(gt)
        return y.detach(), leaf.grad
    return fwdbwd


def pool_call(case: PoolCase, impl: str, mode: str,
              arrays: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Callable[[], object]:
    """One call of a pooling case on an implementation, ready to time.

    Parameters
    ----------
    case : PoolCase
    impl : {'fastnn', 'reference', 'torch'}
    mode : {'fwd', 'fwdbwd'}
    arrays : (x, grad_output), optional
        Default `case.array()` and `pool_grad_output(case)`.

    Returns
    -------
    callable
        Returns the output (fwd) or (output, grad_input), as NumPy arrays or tensors.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x, g = arrays if arrays is not None else (case.array(), pool_grad_output(case))
    if impl == "fastnn":
        return _numpy_pool_call(fastnn, case, mode, x, g)
    if impl == "reference":
        from fastnn import reference

        return _numpy_pool_call(reference, case, mode, x, g)
    if impl == "torch":
        return _torch_pool_call(case, mode, x, g)
    raise ValueError(f"impl must be 'fastnn', 'reference' or 'torch', got {impl!r}")


def copy_yardstick(case: PoolCase) -> Callable[[], object]:
    """``np.copyto`` of an array of the case's input size: the memory bandwidth a pass
    over the input could reach (it moves 2 * input bytes: read and write). NumPy copies on
    one thread whatever the thread count."""
    src = case.array()
    dst = np.empty_like(src)
    dst[...] = 1  # touch the pages now, not in the first sample
    return lambda: np.copyto(dst, src)


# --------------------------------------------------------------------------- recurrence cases

# fastnn (and PyTorch) against the NumPy reference on a recurrence, float32, all three
# computing in float32: |actual - expected| <= rtol * |expected| + atol * max(1, max|expected|).
# Outputs and states are bounded by 1 (tanh, and gates in (0, 1)); a rounding difference of
# one step (~1e-7, sums of I + H <= 1024 products) is carried to the next steps through the
# recurrent Jacobian, which the weights' init U(-1/sqrt(H), 1/sqrt(H)) keeps near 1, so it
# stays ~1e-6 over 200 steps. Weight gradients sum T*N step contributions of the size of
# their scale, so their rounding grows like sqrt(T*N) * eps. Measured on every case of
# RNN_CASES (fastnn and PyTorch, padded and with lengths): at most 2e-6 of the scale, so
# atol = 2e-5 keeps a 10x margin for other GEMM kernels and thread splits, while a wrong
# step, gate or length shows at 1e-2 of the scale or more.
RNN_TOLERANCE = {"rtol": 1e-5, "atol": 2e-5}


def rnn_arrays(case: RNNCase, seed: int = 0):
    """(x, grad_output, weights, lengths) of a recurrence case.

    weights maps PyTorch's parameter names (``weight_ih_l0``, ...) to float32 arrays, drawn
    as fastnn and PyTorch initialise them (U(-1/sqrt(H), 1/sqrt(H)), from `seed`): every
    contender loads them, so all compute the same thing. lengths: `case.lengths(seed)`.
    """
    x, g = case.arrays(seed)
    module = _fastnn_rnn(case, np.random.default_rng(seed + 2))
    return x, g, module.state_dict(), case.lengths(seed)


def _fastnn_rnn(case: RNNCase, rng: Optional[np.random.Generator] = None):
    from fastnn import nn

    kinds = {"lstm": nn.LSTM, "gru": nn.GRU}
    args = (case.input_size, case.hidden_size, case.num_layers)
    opts = dict(bidirectional=case.bidirectional, dtype=case.dtype, rng=rng)
    if case.mode in kinds:
        return kinds[case.mode](*args, **opts)
    return nn.RNN(*args, nonlinearity=case.mode[len("rnn_"):], **opts)


def rnn_module(case: RNNCase, impl: str, weights: Dict[str, np.ndarray]):
    """The case's layer stack on an implementation, holding `weights`.

    'fastnn': `fastnn.nn.LSTM`/`GRU`/`RNN`; 'reference': the same with the instance's
    ``backend`` set to `fastnn.reference.rnn` (pure NumPy, step by step); 'torch':
    ``torch.nn.LSTM``/``GRU``/``RNN``.
    """
    if impl in ("fastnn", "reference"):
        module = _fastnn_rnn(case)
        module.load_state_dict(weights)
        if impl == "reference":
            from fastnn.reference import rnn as reference_rnn

            module.backend = reference_rnn
        return module
    if impl == "torch":
        import torch

        kinds = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        args = (case.input_size, case.hidden_size, case.num_layers)
        opts = dict(bidirectional=case.bidirectional, dtype=torch.float32)
        module = (kinds[case.mode](*args, **opts) if case.mode in kinds else
                  torch.nn.RNN(*args, nonlinearity=case.mode[len("rnn_"):], **opts))
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        return module
    raise ValueError(f"impl must be 'fastnn', 'reference' or 'torch', got {impl!r}")


def rnn_result_names(case: RNNCase, mode: str, weights: Dict[str, np.ndarray]) -> Tuple[str, ...]:
    """What `rnn_call`'s callable returns, in order: 'fwd' gives the output and the final
    states, 'fwdbwd' the output, the input gradient and every parameter's gradient."""
    if mode == "fwd":
        return ("output", "h_n") + (("c_n",) if case.mode == "lstm" else ())
    return ("output", "grad_input") + tuple(f"grad_{name}" for name in weights)


def _fastnn_rnn_call(module, mode: str, x, g, names, lengths) -> Callable[[], object]:
    params = dict(module.named_parameters())
    if mode == "fwd":
        module.eval()

        def forward():
            y, h = module(x, lengths=lengths)
            return (y,) + (tuple(h) if isinstance(h, tuple) else (h,))
        return forward
    module.train()

    def fwdbwd():
        module.zero_grad()  # fresh gradients each call, as torch's below
        y, _ = module(x, lengths=lengths)
        dx = module.backward(g)
        return (y, dx) + tuple(params[name].grad for name in names)
    return fwdbwd


def _torch_rnn_call(module, mode: str, x, g, names, lengths) -> Callable[[], object]:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    steps = x.shape[0]
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    lt = None if lengths is None else torch.from_numpy(np.asarray(lengths, np.int64))

    def run(inp):
        if lt is None:
            return module(inp)
        packed = pack_padded_sequence(inp, lt, enforce_sorted=False)
        y, h = module(packed)
        return pad_packed_sequence(y, total_length=steps)[0], h

    if mode == "fwd":
        module.eval()

        def forward():
            with torch.no_grad():
                y, h = run(xt)
            return (y,) + (tuple(h) if isinstance(h, tuple) else (h,))
        return forward
    module.train()
    leaf = xt.detach().requires_grad_(True)
    params = dict(module.named_parameters())

    def fwdbwd():
        module.zero_grad(set_to_none=True)  # fresh gradients each call
        leaf.grad = None
        y, _ = run(leaf)
        y.backward(gt)
        return (y.detach(), leaf.grad) + tuple(params[name].grad for name in names)
    return fwdbwd


def rnn_call(case: RNNCase, impl: str, mode: str, arrays: Optional[tuple] = None,
             varlen: bool = False) -> Callable[[], object]:
    """One call of a recurrence case on an implementation, ready to time.

    Parameters
    ----------
    case : RNNCase
    impl : {'fastnn', 'reference', 'torch'}
    mode : {'fwd', 'fwdbwd'}
        'fwd' is inference: the module in eval mode (torch also under ``no_grad``).
        'fwdbwd' is a training step: train mode, the forward, then the backward of a fixed
        grad_output (torch: ``out.backward(g)``), every gradient cleared first.
    arrays : tuple, optional
        (x, grad_output, weights, lengths); default `rnn_arrays(case)`.
    varlen : bool
        Run the batch with its random `lengths` (in [T/2, T]): fastnn and the reference
        pass ``lengths=``, torch packs (``pack_padded_sequence(enforce_sorted=False)``,
        then ``pad_packed_sequence``). Without it every sequence has T steps.

    Returns
    -------
    callable
        Returns the tuple named by `rnn_result_names` (NumPy arrays, or tensors for torch).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x, g, weights, lengths = arrays if arrays is not None else rnn_arrays(case)
    names = list(weights)
    module = rnn_module(case, impl, weights)
    lengths = lengths if varlen else None
    if impl == "torch":
        return _torch_rnn_call(module, mode, x, g, names, lengths)
    return _fastnn_rnn_call(module, mode, x, g, names, lengths)


def rnn_step_flops(case: RNNCase) -> int:
    """Multiply-adds x 2 of one step's recurrent GEMM, h (N, H) @ W_hh^T (H, G*H)."""
    return 2 * case.batch * case.gates * case.hidden_size * case.hidden_size


def rnn_yardstick(case: RNNCase) -> Dict[str, Callable[[], object]]:
    """The plain GEMM of one step's recurrent product: name -> call (flops `rnn_step_flops`).

    ``gemm_batch`` with batch 1 computes h (M=N, K=H) @ W_hh^T (K=H, G*H) with the BLAS and
    OpenMP split of fastnn's GEMMs ('sgemm'): the rate a step's work could reach if the
    gates cost nothing. For a batch of one it is a matrix-vector product split over chunks
    of the G*H columns, so the transposed product, W_hh (G*H, H) @ h^T (H, 1), is also given
    ('sgemmT'). Take the faster of the two.
    """
    rng = np.random.default_rng(3)
    n, h, gh = case.batch, case.hidden_size, case.gates * case.hidden_size
    a = rng.standard_normal((n, h)).astype(case.dtype)
    b = rng.standard_normal((1, h, gh)).astype(case.dtype)
    c = np.empty((1, n, gh), dtype=case.dtype)
    calls = {"sgemm": lambda: _kernels.gemm_batch(a, b, c)}
    if n == 1:
        at = np.ascontiguousarray(b[0].T)        # (G*H, H)
        bt = np.ascontiguousarray(a.T)[None]     # (1, H, 1)
        ct = np.empty((1, gh, 1), dtype=case.dtype)
        calls["sgemmT"] = lambda: _kernels.gemm_batch(at, bt, ct)
    return calls


def rnn_max_error(actual, expected: np.ndarray) -> float:
    """The largest |a - e| / (rtol*|e| + atol*scale) under `RNN_TOLERANCE`: at most 1 when
    they agree (inf for a shape or dtype mismatch). `actual` may be a torch tensor."""
    actual = actual.detach().numpy() if hasattr(actual, "detach") else np.asarray(actual)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return math.inf
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    bound = RNN_TOLERANCE["rtol"] * np.abs(expected) + RNN_TOLERANCE["atol"] * scale
    return float(np.max(np.abs(actual - expected) / bound, initial=0.0))


def check_rnn_case(case: RNNCase) -> Dict[str, float]:
    """Compare fastnn with the reference on one recurrence case, inference and training.

    Returns
    -------
    dict
        For each result of `rnn_result_names` (forward and training): the largest error as a
        fraction of the allowed one (they agree when every value is <= 1).
    """
    arrays = rnn_arrays(case)
    errors = {}
    for mode in MODES:
        got = rnn_call(case, "fastnn", mode, arrays)()
        want = rnn_call(case, "reference", mode, arrays)()
        for name, a, e in zip(rnn_result_names(case, mode, arrays[2]), got, want):
            errors[f"{mode} {name}"] = rnn_max_error(a, e)
    return errors


# --------------------------------------------------------------------------- output


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 align: Optional[str] = None) -> str:
    """A plain-text table; `align` has one 'l' or 'r' per column (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(cell)) for cell in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(wd) if a == "l" else str(c).rjust(wd)
                         for c, wd, a in zip(cells, widths, align)).rstrip()
    rule = "  ".join("-" * wd for wd in widths)
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def fmt_ms(seconds: float) -> str:
    """Milliseconds with three significant digits or so."""
    if math.isnan(seconds):
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(ratio: float) -> str:
    if math.isnan(ratio) or math.isinf(ratio):
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


class Progress:
    """A one-line progress indicator on stderr ("[3/10] measuring ... ").

    On a terminal the line is rewritten in place and erased at the end; into a
    file or pipe each step is one line.
    """

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.count = 0
        self.stream = stream if stream is not None else sys.stderr
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, message: str) -> None:
        self.count += 1
        sys.stdout.flush()  # what was printed before goes first
        text = f"[{self.count}/{self.total}] {message}"
        if self._tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
