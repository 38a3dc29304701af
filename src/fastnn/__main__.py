"""``python -m fastnn``: configuration, a correctness check and a short speed table.

1. `fastnn.show_config()`;
2. fastnn against the NumPy reference on each case of `fastnn._cases.QUICK_CASES`
   (convolutions) and `QUICK_RNN_CASES` (an LSTM and a GRU), forward and backward:
   "ok" when they agree within the tolerance;
3. fastnn's time on those cases, forward (inference) and forward+backward
   (training), with its speedup over the reference and over PyTorch (when
   installed), measured interleaved with `fastnn._bench` (progress on stderr).
   About a minute.

The exit status is 1 when a check fails. ``bench/report.py`` is the full
report (more cases, thread counts and the GEMM yardstick).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from typing import Dict, List, Optional, Sequence

import fastnn
from fastnn import _bench
from fastnn._cases import QUICK_CASES, QUICK_RNN_CASES, ConvCase, RNNCase

PASS_NAMES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}
PASS_FLOPS = {"fwd": 1, "fwdbwd": 3}  # the backward is two more GEMMs of the forward's size
ROUNDS = 7
# Seconds of samples for the reference: one or two on the batch-16 cases.
REFERENCE_TIME = 0.8


def check(cases: Sequence[ConvCase], rnn_cases: Sequence[RNNCase]) -> bool:
    """Print, per case, whether fastnn agrees with the reference; True if all do."""
    print("\ncorrectness: fastnn against fastnn.reference (outputs and every gradient)")
    all_ok = True
    for case in list(cases) + list(rnn_cases):
        errors = (_bench.check_rnn_case(case) if isinstance(case, RNNCase)
                  else _bench.check_case(case))
        worst = max(errors.values())
        ok = worst <= 1.0
        all_ok &= ok
        verdict = "ok" if ok else "FAILED " + ", ".join(
            f"{name} {err:.3g}x the tolerance" for name, err in errors.items() if err > 1.0)
        print(f"  {case.name:<26} {verdict}")
    return all_ok


def _case_call(case, impl: str, mode: str, arrays):
    if isinstance(case, RNNCase):
        return _bench.rnn_call(case, impl, mode, arrays)
    return _bench.conv_call(case, impl, mode, arrays)


def contenders_of(case, mode: str, threads: int, with_torch: bool) -> List[_bench.Contender]:
    arrays = (_bench.rnn_arrays(case) if isinstance(case, RNNCase)
              else case.arrays() + (_bench.grad_output(case),))
    before = partial(_bench.set_threads, threads)
    out = [_bench.Contender("fastnn", _case_call(case, "fastnn", mode, arrays), before),
           # NumPy's OpenBLAS was loaded before we could shorten its workers' spinning,
           # hence the longer settle after each sample (see fastnn._bench)
           _bench.Contender("reference", _case_call(case, "reference", mode, arrays), before,
                            warmup=False, max_time=REFERENCE_TIME,
                            settle=_bench.reference_settle())]
    if with_torch:
        out.append(_bench.Contender("torch", _case_call(case, "torch", mode, arrays), before))
    return out


def speed_table(cases: Sequence, threads: int, with_torch: bool) -> str:
    """Measure every (case, pass) and return the table."""
    # wait at most 30 s in all for a quiet machine: this job must end in a minute or two
    probe = _bench.Probe(wait_budget=30.0)
    probe.calibrate()
    progress = _bench.Progress(len(cases) * len(_bench.MODES))
    rows = []
    dropped = total = 0
    for case in cases:
        for mode in _bench.MODES:
            progress.step(f"measuring {case.name} {mode} ...")
            t = _bench.measure(contenders_of(case, mode, threads, with_torch), rounds=ROUNDS,
                               probe=probe)
            dropped += sum(x.dropped for x in t.values())
            total += sum(x.dropped + len(x.clean) for x in t.values())
            rows.append(_row(case, mode, t, with_torch))
    progress.done()
    header = ["case", "pass", "fastnn ms", "vs reference"] + (["vs torch"] if with_torch
                                                               else []) + ["GFLOP/s"]
    note = (f"{dropped} of {total} samples dropped as disturbed (a {probe.threads}-thread sgemm "
            f"probe next to them below {100 * _bench.CLEAN_FRACTION:.0f}% of its best, "
            f"{probe.best:.0f} GFLOP/s, or our threads kept waiting for a CPU)")
    return _bench.format_table(header, rows) + "\n" + note


def _row(case, mode: str, t: Dict[str, _bench.Timing], with_torch: bool) -> List[str]:
    mine = t["fastnn"].value()

    def vs(name: str) -> str:
        flag = "" if t[name].trusted else "?"
        return _bench.fmt_ratio(t[name].value() / mine) + flag

    row = [case.name if mode == "fwd" else "", PASS_NAMES[mode],
           _bench.fmt_ms(mine) + ("" if t["fastnn"].trusted else "?"), vs("reference")]
    if with_torch:
        row.append(vs("torch"))
    row.append(f"{PASS_FLOPS[mode] * case.flops() / mine / 1e9:.1f}")
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__.split("\n")[0])
    parser.add_argument("--no-speed", action="store_true", help="only the configuration and "
                        "the correctness check")
    args = parser.parse_args(argv)

    fastnn.show_config()
    with_torch = _bench.torch_available()
    if with_torch:
        import torch
        print(f"    torch: {torch.__version__}")
    else:
        print("    torch: not installed (no torch column)")

    ok = check(QUICK_CASES, QUICK_RNN_CASES)
    if not args.no_speed:
        threads = fastnn.get_num_threads()
        start = time.perf_counter()
        table = speed_table(QUICK_CASES + QUICK_RNN_CASES, threads, with_torch)
        print(f"\nspeed with {threads} thread{'s' if threads > 1 else ''}: median of clean "
              f"samples, contenders interleaved ({time.perf_counter() - start:.0f} s)")
        print("vs reference / vs torch: their time over fastnn's (>1: fastnn is faster); "
              "GFLOP/s: forward = 2*MACs, forward+backward = 3x that; '?': no clean sample; "
              "recurrences: fwd = inference (eval), fwd+bwd = a training step")
        print(table)
        fastnn.set_num_threads(threads)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
