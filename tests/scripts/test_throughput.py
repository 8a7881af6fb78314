"""`segsuite benchmark throughput` plumbing on fake timings (the measurements themselves are benchmarks, not tests)."""

import sys

import pytest
import torch

from segsuite.core.benchmark import BARE_BEST, BARE_CONTIGUOUS, BEST, CONTIGUOUS, Timing, bare_forward, bare_forwards
from segsuite.scripts import _throughput as throughput
from segsuite.scripts import benchmark
from segsuite.scripts._throughput import Figure, format_table, speed_figure


def test_speed_figure_is_the_ratio_of_medians_with_the_rounds_as_spread():
    timings = {"bare": Timing("bare", (1.0, 2.0, 1.2)), "ours": Timing("ours", (2.0, 2.0, 1.5))}
    figure = speed_figure("1. ours vs bare", timings, "ours", "bare", 0.97)
    assert figure.value == pytest.approx(1.2 / 2.0)
    assert figure.spread == pytest.approx((0.5, 1.0))  # rounds: 1/2, 2/2, 1.2/1.5
    assert not figure.met


def test_goals_are_floors_for_speed_and_ceilings_for_memory():
    assert Figure("speed", 0.97, 0.97).met and not Figure("speed", 0.96, 0.97).met
    assert Figure("memory", 0.1, 0.1, at_most=True).met and not Figure("memory", 0.3, 0.1, at_most=True).met


def test_table_has_one_row_per_figure_with_spread_goal_and_verdict():
    table = format_table([Figure("1. land cover", 0.931, 0.97, spread=(0.92, 0.94)),
                          Figure("3. memory", 0.05, 0.1, at_most=True, note="50 / 1000 MiB")])
    header, first, second = table.splitlines()
    assert header.split() == ["figure", "ours", "spread", "goal", "met?", "contig", "note"]
    assert first.split() == ["1.", "land", "cover", "0.931", "0.920-0.940", ">=", "0.97", "NO", "-"]
    assert second.split() == ["3.", "memory", "0.050", "-", "<=", "0.1", "yes", "-", "50", "/", "1000", "MiB"]


def test_a_speed_figure_divides_by_the_best_bare_forward_and_shows_the_contiguous_one_beside_it():
    timings = {BARE_BEST: Timing(BARE_BEST, (1.0, 1.0)), BARE_CONTIGUOUS: Timing(BARE_CONTIGUOUS, (1.5, 1.5)),
               "ours": Timing("ours", (1.25, 1.25))}
    figure = speed_figure("road", timings, "ours", goal=0.95, second=BARE_CONTIGUOUS)
    assert (figure.value, figure.contiguous) == pytest.approx((0.8, 1.2))
    assert format_table([figure]).splitlines()[1].split()[1:7] == ["0.800", "0.800-0.800", ">=", "0.95", "NO", "1.200"]


def test_the_best_bare_forward_runs_2d_batches_channels_last_and_gives_the_contiguous_argmax():
    net = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                                              and not args[0].is_contiguous()))
    batches = [torch.rand(2, 3, 8, 8)]
    for layout in (BEST, CONTIGUOUS):
        bare_forward(net, batches, "cpu", layout=layout)()
    assert seen == [True, False]  # each baseline runs a copy (the hook with it) in its layout
    assert net.weight.is_contiguous()  # the caller's network is left as it was
    forwards = bare_forwards(net, batches, "cpu")
    assert list(forwards) == [BARE_BEST, BARE_CONTIGUOUS]
    with pytest.raises(ValueError, match="'best'"):
        bare_forward(net, batches, "cpu", layout="nhwc")


def test_cuda_without_a_gpu_says_so_and_measures_nothing(monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # leave this process's threads alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert throughput.run(quick=True, device="cuda")["figures"] == []
    assert "no GPU here" in capsys.readouterr().out


def test_device_is_refused_for_a_suite_that_takes_none(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["benchmark", "instances", "--device", "cuda"])
    with pytest.raises(SystemExit) as exit_:
        benchmark.main()
    assert exit_.value.code == 2
    assert "--device is not taken by ['instances']" in capsys.readouterr().err
