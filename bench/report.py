"""Speed report of fastnn's convolutions (or, with --pool, pooling; with --rnn, recurrences):
one table per thread count.

Usage::

    python bench/report.py [--threads 1 2] [--cases name,...] [--quick] [--pool | --rnn]
                           [--rounds N] [--stat median|best|paired]

For every case of `fastnn._cases.BENCH_CASES` (or `QUICK_CASES` with
``--quick``), forward and forward+backward, each table gives fastnn's time, its
speedup over the NumPy reference and over PyTorch (when installed), its
GFLOP/s, the GFLOP/s of a plain GEMM of the same sizes (the yardstick: what the
convolution would reach if building its columns cost nothing) and fastnn's
share of it. A last table gives fastnn's speedup from the fewest to the most
threads.

With ``--pool`` the cases are `fastnn._cases.POOL_CASES` and the yardstick is
memory bandwidth instead: GB/s counts the least traffic of a pass (input and
output; for forward+backward also grad_output and grad_input), next to the
rate of ``np.copyto`` of the input's size (read + write) measured in the same
run. PyTorch's spatial pyramid pooling is its adaptive pools concatenated.

With ``--rnn`` the cases are `fastnn._cases.RNN_CASES` (`fastnn.nn.LSTM`/`GRU`/`RNN`
against ``torch.nn``'s, same weights), in two passes: inference (eval mode, torch under
no_grad) and training (forward + backward). GFLOP/s counts 2*T*N*G*H*(I_l + H) per layer and
direction (x3 for training); the yardstick is a plain GEMM of one step's recurrent product
(M=N, N=G*H, K=H). Each row shows the issue's target speedup over PyTorch and whether it was
met, and, on batched cases, the cost of the batch with random lengths in [T/2, T] over the
padded batch (fastnn's, target <= 1; torch's, packed, informational). The last table gives
the speedup from the fewest to the most threads against the issue's targets.

All contenders of a case (every implementation, pass and thread count, and the
yardstick) are timed interleaved, round by round, in this one process, so the
ratios compare like with like; see `fastnn._bench` for the rules. Timings of
different runs are not comparable on a shared machine: compare ratios.
"""
import os

# Must precede NumPy's import (fastnn imports it): NumPy's OpenBLAS workers then
# sleep after ~0.4 ms instead of spinning ~0.1 s on the next contender's core.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import _bench  # noqa: E402
from fastnn._cases import (BENCH_CASES, POOL_CASES, QUICK_CASES, RNN_CASES, ConvCase,  # noqa: E402
                           PoolCase, RNNCase)

PASS_NAMES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}
# Forward+backward does three GEMMs of the forward's size (output, input and
# weight gradients).
PASS_FLOPS = {"fwd": 1, "fwdbwd": 3}
# Seconds of samples the NumPy reference gets per contender: 1-2 samples on the
# batch-16 cases, where its ratio is informational anyway.
REFERENCE_TIME = {"quick": 0.6, "full": 1.5}
# --rnn: the passes' names, and the issue's targets for the speedup from the fewest to the
# most threads (batched cases; at a batch of one, more threads must only not be slower).
RNN_PASS_NAMES = {"fwd": "infer", "fwdbwd": "train"}
RNN_SCALING_TARGET = {"batch": 1.7, "single": 1.0}
# The lengths-vs-padded cost ratio fastnn must not exceed.
RNN_VARLEN_TARGET = 1.0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                        help="thread counts, one table each (default: 1 2)")
    parser.add_argument("--cases", default=None,
                        help="comma-separated case names (default: all, or the quick ones)")
    parser.add_argument("--quick", action="store_true",
                        help="the quick cases of `python -m fastnn`, 3 rounds (~1 minute)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="samples of each contender (default 7, 3 with --quick)")
    parser.add_argument("--stat", choices=("median", "best", "paired"), default="median",
                        help="statistic of the clean samples (default: median); paired: "
                             "ratios are the median of the rounds' ratios, every sample "
                             "counted (for a machine too noisy to leave clean samples)")
    parser.add_argument("--pool", action="store_true",
                        help="the pooling cases (POOL_CASES), against a copy of the same size")
    parser.add_argument("--rnn", action="store_true",
                        help="the recurrence cases (RNN_CASES), against a GEMM of one step")
    parser.add_argument("--verbose", action="store_true",
                        help="one line per sample on stderr (to see why samples were dropped)")
    args = parser.parse_args(argv)
    if min(args.threads) < 1:
        parser.error("--threads must be >= 1")
    if args.pool and args.rnn:
        parser.error("--pool and --rnn exclude each other")
    return args


def select_cases(names: Optional[str], quick: bool, pool: bool = False,
                 rnn: bool = False) -> list:
    """The cases to run: the named ones (in the table's order), else all or the quick ones."""
    table = RNN_CASES if rnn else POOL_CASES if pool else BENCH_CASES
    if not names:
        return list(table if pool or rnn else QUICK_CASES if quick else BENCH_CASES)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {c.name: c for c in table}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [c for c in table if c.name in wanted]


def contenders_of(case: ConvCase, threads: Sequence[int], with_torch: bool,
                  reference_time: float) -> List[_bench.Contender]:
    """Every (implementation, pass, thread count) of one case, plus the yardstick GEMM."""
    arrays = case.arrays() + (_bench.grad_output(case),)
    return _contenders(partial(_bench.conv_call, case), arrays, threads, with_torch,
                       reference_time, _bench.gemm_yardstick(case))


def _contenders(make_call, arrays, threads: Sequence[int], with_torch: bool,
                reference_time: float, yardsticks: Dict[str, Callable[[], object]]
                ) -> List[_bench.Contender]:
    """Every (implementation, pass, thread count), plus the yardsticks at each thread count;
    `make_call(impl, mode, arrays)` builds one timed call."""
    impls = ["fastnn", "reference"] + (["torch"] if with_torch else [])
    out = []
    for n in threads:
        before = partial(_bench.set_threads, n)
        for mode in _bench.MODES:
            for impl in impls:
                call = make_call(impl, mode, arrays)
                if impl == "reference":
                    out.append(_bench.Contender(f"{impl}/{mode}@{n}", call, before, warmup=False,
                                                max_time=reference_time,
                                                settle=_bench.reference_settle()))
                else:
                    out.append(_bench.Contender(f"{impl}/{mode}@{n}", call, before))
        out += [_bench.Contender(f"{name}@{n}", call, before) for name, call in yardsticks.items()]
    return out


def yardstick(r: Dict[str, _bench.Timing], n: int, stat: str) -> _bench.Timing:
    """The faster orientation of the case's plain GEMM at `n` threads."""
    found = [t for name, t in r.items() if name in (f"sgemm@{n}", f"sgemmT@{n}")]
    return min(found, key=lambda t: t.value(stat))


def ratio(slow: Optional[_bench.Timing], fast: _bench.Timing, stat: str) -> float:
    if slow is None:
        return math.nan
    if stat == "paired":
        return _bench.paired_ratio(slow, fast)
    return slow.value(stat) / fast.value(stat)


def flag(t: Optional[_bench.Timing]) -> str:
    """'?' marks a value taken from dirty samples only (no clean one)."""
    return "" if t is None or t.trusted else "?"


def thread_table(cases: Sequence[ConvCase], results: Dict[str, Dict[str, _bench.Timing]],
                 n: int, stat: str, with_torch: bool) -> str:
    header = ["case", "pass", "fastnn ms", "vs ref", "vs torch", "GFLOP/s", "sgemm GFLOP/s",
              "% of sgemm"]
    if not with_torch:
        header.remove("vs torch")
    rows = []
    for case in cases:
        r = results[case.name]
        gemm = yardstick(r, n, stat)
        gemm_rate = case.flops() / gemm.value(stat) / 1e9
        for mode in _bench.MODES:
            mine = r[f"fastnn/{mode}@{n}"]
            ref = r.get(f"reference/{mode}@{n}")
            rate = PASS_FLOPS[mode] * case.flops() / mine.value(stat) / 1e9
            row = [case.name if mode == "fwd" else "", PASS_NAMES[mode],
                   _bench.fmt_ms(mine.value(stat)) + flag(mine),
                   _bench.fmt_ratio(ratio(ref, mine, stat)) + flag(ref)]
            if with_torch:
                torch_t = r.get(f"torch/{mode}@{n}")
                row.append(_bench.fmt_ratio(ratio(torch_t, mine, stat)) + flag(torch_t))
            row += [f"{rate:.1f}", f"{gemm_rate:.1f}" + flag(gemm),
                    f"{100 * rate / gemm_rate:.0f}%"]
            rows.append(row)
    return _bench.format_table(header, rows)


def scaling_table(cases: Sequence[ConvCase], results: Dict[str, Dict[str, _bench.Timing]],
                  lo: int, hi: int, stat: str) -> str:
    header = ["case", "fwd", "fwd+bwd", "sgemm"]
    rows = []
    for case in cases:
        r = results[case.name]
        row = [case.name]
        for name in ("fastnn/fwd", "fastnn/fwdbwd"):
            row.append(_bench.fmt_ratio(ratio(r[f"{name}@{lo}"], r[f"{name}@{hi}"], stat)))
        row.append(_bench.fmt_ratio(ratio(yardstick(r, lo, stat), yardstick(r, hi, stat), stat)))
        rows.append(row)
    return _bench.format_table(header, rows)


def dropped_note(results: Dict[str, Dict[str, _bench.Timing]], n: int) -> str:
    timings = [t for r in results.values() for name, t in r.items() if name.endswith(f"@{n}")]
    dropped = sum(t.dropped for t in timings)
    total = dropped + sum(len(t.clean) for t in timings)
    return f"{dropped} of {total} samples dropped"


def pool_contenders_of(case: PoolCase, threads: Sequence[int], with_torch: bool,
                       reference_time: float) -> List[_bench.Contender]:
    """Every (implementation, pass, thread count) of a pooling case, plus the copy."""
    arrays = (case.array(), _bench.pool_grad_output(case))
    return _contenders(partial(_bench.pool_call, case), arrays, threads, with_torch,
                       reference_time, {"copy": _bench.copy_yardstick(case)})


def pool_thread_table(cases: Sequence[PoolCase], results: Dict[str, Dict[str, _bench.Timing]],
                      n: int, stat: str, with_torch: bool) -> str:
    header = ["case", "pass", "fastnn ms", "vs ref", "vs torch", "torch GB/s", "GB/s",
              "copy GB/s", "% of copy"]
    if not with_torch:
        header = [h for h in header if "torch" not in h]
    rows = []
    for case in cases:
        r = results[case.name]
        copy = r[f"copy@{n}"]
        copy_bytes = 2 * int(np.prod(case.x_shape)) * np.dtype(case.dtype).itemsize
        copy_rate = copy_bytes / copy.value(stat) / 1e9
        for mode in _bench.MODES:
            mine = r[f"fastnn/{mode}@{n}"]
            ref = r.get(f"reference/{mode}@{n}")
            rate = case.bytes(mode) / mine.value(stat) / 1e9
            row = [case.name if mode == "fwd" else "", PASS_NAMES[mode],
                   _bench.fmt_ms(mine.value(stat)) + flag(mine),
                   _bench.fmt_ratio(ratio(ref, mine, stat)) + flag(ref)]
            if with_torch:
                torch_t = r[f"torch/{mode}@{n}"]
                row += [_bench.fmt_ratio(ratio(torch_t, mine, stat)) + flag(torch_t),
                        f"{case.bytes(mode) / torch_t.value(stat) / 1e9:.2f}"]
            row += [f"{rate:.1f}", f"{copy_rate:.1f}" + flag(copy),
                    f"{100 * rate / copy_rate:.0f}%"]
            rows.append(row)
    return _bench.format_table(header, rows)


def pool_scaling_table(cases: Sequence[PoolCase], results: Dict[str, Dict[str, _bench.Timing]],
                       lo: int, hi: int, stat: str) -> str:
    header = ["case", "fwd", "fwd+bwd", "copy"]
    rows = []
    for case in cases:
        r = results[case.name]
        row = [case.name]
        for name in ("fastnn/fwd", "fastnn/fwdbwd", "copy"):
            row.append(_bench.fmt_ratio(ratio(r[f"{name}@{lo}"], r[f"{name}@{hi}"], stat)))
        rows.append(row)
    return _bench.format_table(header, rows)


def rnn_contenders_of(case: RNNCase, threads: Sequence[int], with_torch: bool,
                      reference_time: float) -> List[_bench.Contender]:
    """Every (implementation, pass, thread count) of a recurrence case, the step's GEMM and,
    on batched cases, fastnn (and torch, packed) on the batch with random lengths."""
    arrays = _bench.rnn_arrays(case)
    out = _contenders(partial(_bench.rnn_call, case), arrays, threads, with_torch,
                      reference_time, _bench.rnn_yardstick(case))
    if case.varlen:
        for n in threads:
            before = partial(_bench.set_threads, n)
            for mode in _bench.MODES:
                for impl in ["fastnn"] + (["torch"] if with_torch else []):
                    call = _bench.rnn_call(case, impl, mode, arrays, varlen=True)
                    out.append(_bench.Contender(f"{impl}-len/{mode}@{n}", call, before))
    return out


def _against(value: float, target: float, at_least: bool = True) -> str:
    """'<target> ok' or '<target> MISS' (nothing measured: '-')."""
    if math.isnan(value):
        return "-"
    met = value >= target if at_least else value <= target
    return f"{'>=' if at_least else '<='}{target:.2f}x {'ok' if met else 'MISS'}"


def rnn_thread_table(cases: Sequence[RNNCase], results: Dict[str, Dict[str, _bench.Timing]],
                     n: int, stat: str, with_torch: bool) -> str:
    header = ["case", "pass", "fastnn ms", "vs ref", "vs torch", "target", "GFLOP/s",
              "sgemm GFLOP/s", "% of sgemm", "len/pad", "len target", "torch len/pad"]
    if not with_torch:
        header = [h for h in header if h not in ("vs torch", "target", "torch len/pad")]
    rows = []
    for case in cases:
        r = results[case.name]
        gemm = yardstick(r, n, stat)
        gemm_rate = _bench.rnn_step_flops(case) / gemm.value(stat) / 1e9
        for i, mode in enumerate(_bench.MODES):
            mine = r[f"fastnn/{mode}@{n}"]
            ref = r.get(f"reference/{mode}@{n}")
            rate = PASS_FLOPS[mode] * case.flops() / mine.value(stat) / 1e9
            row = [case.name if mode == "fwd" else "", RNN_PASS_NAMES[mode],
                   _bench.fmt_ms(mine.value(stat)) + flag(mine),
                   _bench.fmt_ratio(ratio(ref, mine, stat)) + flag(ref)]
            if with_torch:
                torch_t = r.get(f"torch/{mode}@{n}")
                speedup = ratio(torch_t, mine, stat)
                row += [_bench.fmt_ratio(speedup) + flag(torch_t),
                        _against(speedup, case.targets[i])]
            row += [f"{rate:.1f}", f"{gemm_rate:.1f}" + flag(gemm),
                    f"{100 * rate / gemm_rate:.0f}%"]
            mine_len = r.get(f"fastnn-len/{mode}@{n}")
            # len/pad: the lengths batch's time over the padded batch's
            cost = ratio(mine_len, mine, stat) if mine_len is not None else math.nan
            row += [_bench.fmt_ratio(cost) + flag(mine_len),
                    _against(cost, RNN_VARLEN_TARGET, at_least=False)]
            if with_torch:
                torch_t, torch_len = r.get(f"torch/{mode}@{n}"), r.get(f"torch-len/{mode}@{n}")
                cost = ratio(torch_len, torch_t, stat) if torch_len is not None else math.nan
                row.append(_bench.fmt_ratio(cost) + flag(torch_len))
            rows.append(row)
    align = "".join("l" if h in ("case", "pass", "target", "len target") else "r"
                    for h in header)
    return _bench.format_table(header, rows, align)


def rnn_scaling_table(cases: Sequence[RNNCase], results: Dict[str, Dict[str, _bench.Timing]],
                      lo: int, hi: int, stat: str, with_torch: bool) -> str:
    header = ["case", "infer", "train", "target", "met", "torch infer", "torch train", "sgemm"]
    if not with_torch:
        header = [h for h in header if not h.startswith("torch")]
    rows = []
    for case in cases:
        r = results[case.name]
        target = RNN_SCALING_TARGET["batch" if case.batch > 1 else "single"]
        speedups = [ratio(r[f"fastnn/{mode}@{lo}"], r[f"fastnn/{mode}@{hi}"], stat)
                    for mode in _bench.MODES]
        row = [case.name] + [_bench.fmt_ratio(s) for s in speedups]
        row += [f">={target:.2f}x", "ok" if all(s >= target for s in speedups) else "MISS"]
        if with_torch:
            row += [_bench.fmt_ratio(ratio(r[f"torch/{mode}@{lo}"], r[f"torch/{mode}@{hi}"],
                                           stat)) for mode in _bench.MODES]
        row.append(_bench.fmt_ratio(ratio(yardstick(r, lo, stat), yardstick(r, hi, stat),
                                          stat)))
        rows.append(row)
    return _bench.format_table(header, rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cases = select_cases(args.cases, args.quick, args.pool, args.rnn)
    threads = sorted(set(args.threads))
    rounds = args.rounds or (3 if args.quick else 7)
    with_torch = _bench.torch_available()
    reference_time = REFERENCE_TIME["quick" if args.quick else "full"]
    cores = _bench.usable_cores()

    fastnn.show_config()
    if with_torch:
        import torch
        print(f"    torch: {torch.__version__}")
    else:
        print("    torch: not installed (no torch column)")
    if max(threads) > cores:
        print(f"note: {max(threads)} threads on {cores} cores: oversubscribed", file=sys.stderr)

    probe = _bench.Probe(threads=max(cores, max(threads)))
    probe.calibrate()
    progress = _bench.Progress(len(cases))
    log = partial(print, file=sys.stderr) if args.verbose else None
    results: Dict[str, Dict[str, _bench.Timing]] = {}
    start = time.perf_counter()
    for case in cases:
        progress.step(f"measuring {case.name} (threads {' '.join(map(str, threads))}) ...")
        if args.pool:
            contenders = pool_contenders_of(case, threads, with_torch, reference_time)
        elif args.rnn:
            contenders = rnn_contenders_of(case, threads, with_torch, reference_time)
        else:
            contenders = contenders_of(case, threads, with_torch, reference_time)
        results[case.name] = _bench.measure(contenders, rounds=rounds, probe=probe, log=log)
        del contenders  # free this case's arrays before the next case
    progress.done()
    fastnn.set_num_threads(cores)

    what = ("ratios: median of the rounds' ratios, every sample; times: median of clean samples"
            if args.stat == "paired" else f"{args.stat} of clean samples")
    print(f"\n{what}, {rounds} rounds, contenders interleaved; "
          f"probe: {probe.threads}-thread sgemm, best {probe.best:.0f} GFLOP/s; a sample is "
          f"dropped when a probe next to it is below {100 * _bench.CLEAN_FRACTION:.0f}% of that "
          f"or our threads waited for a CPU during it; {time.perf_counter() - start:.0f} s")
    print("vs ref / vs torch: their time over fastnn's (>1: fastnn is faster); the reference "
          "gets 1-2 samples on big cases (informational).")
    if args.pool:
        print("GB/s: the least traffic of the pass (input + output; fwd+bwd adds grad_output "
              "and grad_input) over its time; copy: np.copyto of the input's size (read + "
              "write, one thread); '?': no clean sample, value from dirty ones.")
        for n in threads:
            print(f"\nfastnn with {n} thread{'s' if n > 1 else ''} ({dropped_note(results, n)})")
            print(pool_thread_table(cases, results, n, args.stat, with_torch))
        if len(threads) > 1:
            lo, hi = threads[0], threads[-1]
            print(f"\nspeedup of fastnn from {lo} to {hi} threads (copy: np.copyto's)")
            print(pool_scaling_table(cases, results, lo, hi, args.stat))
        return 0
    if args.rnn:
        print("infer: eval mode (torch under no_grad); train: forward + backward of a fixed "
              "grad_output. GFLOP/s: 2*T*N*G*H*(I_l + H) per layer and direction, x3 for "
              "train; sgemm: gemm_batch of one step's recurrent product (M=N, N=G*H, K=H; "
              "N=1: the faster of it and its transpose). target: the issue's speedup over "
              "torch. len/pad: time with random lengths in [T/2, T] over the padded batch's "
              "(torch: packed); '?': no clean sample, value from dirty ones. % of sgemm may pass "
              "100%: the input projection is one GEMM over all steps, larger and faster than "
              "a step's.")
        for n in threads:
            print(f"\nfastnn with {n} thread{'s' if n > 1 else ''} ({dropped_note(results, n)})")
            print(rnn_thread_table(cases, results, n, args.stat, with_torch))
        if len(threads) > 1:
            lo, hi = threads[0], threads[-1]
            print(f"\nspeedup from {lo} to {hi} threads (target: batched cases "
                  f">={RNN_SCALING_TARGET['batch']}x, batch of one never slower; sgemm: the "
                  f"yardstick's)")
            print(rnn_scaling_table(cases, results, lo, hi, args.stat, with_torch))
        return 0
    print("GFLOP/s: forward = case.flops(), forward+backward = 3x; sgemm: gemm_batch of the "
          "forward's M, N, K (no im2col; batch 1: the faster of it and its transpose); "
          "'?': no clean sample, value from dirty ones.")
    for n in threads:
        print(f"\nfastnn with {n} thread{'s' if n > 1 else ''} ({dropped_note(results, n)})")
        print(thread_table(cases, results, n, args.stat, with_torch))
    if len(threads) > 1:
        lo, hi = threads[0], threads[-1]
        print(f"\nspeedup of fastnn from {lo} to {hi} threads (sgemm: the yardstick's)")
        print(scaling_table(cases, results, lo, hi, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
