"""The main job, ``python -m fastnn``, without its speed table: configuration and the
correctness check of every quick case (convolutions and recurrences) pass."""
from __future__ import annotations

from fastnn.__main__ import main
from fastnn._cases import QUICK_CASES, QUICK_RNN_CASES


def test_main_job_checks_pass(capsys):
    assert main(["--no-speed"]) == 0
    out = capsys.readouterr().out
    for case in QUICK_CASES + QUICK_RNN_CASES:
        line = next(line for line in out.splitlines() if line.strip().startswith(case.name))
        assert line.split()[-1] == "ok", line
