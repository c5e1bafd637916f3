"""The demo's pipeline end to end on a small set (the real demo trains 480 steps on 252 identities)."""

from __future__ import annotations

import pytest

from vireid.demo import run_demo


@pytest.mark.slow
def test_demo_runs_and_draws_its_pictures(tmp_path, capsys):
    result = run_demo(tmp_path / "demo", ids=20, test_ids=6,
                      overrides=("train.epochs=2", "train.iters_per_epoch=2", "test.trials=2"))
    printed = capsys.readouterr().out
    assert "chance Rank-1 is 16.7% (6 gallery identities)" in printed
    assert [p.rsplit("/", 1)[-1] for p in result["pictures"]] == ["contact_sheet.png", "learning_curve.png",
                                                                 "ranked_lists.png"]
    assert len(result["trained"]["trials"]) == len(result["untrained"]["trials"]) == 2


def test_the_command_line_trains_on_the_library_default_set():
    """`vireid demo` (what `make demo` runs) and `run_demo` read one definition of the demo's set size."""
    import inspect

    from vireid.cli import build_parser
    from vireid.demo import DEMO_IDS, DEMO_TEST_IDS

    args = build_parser().parse_args(["demo"])
    defaults = inspect.signature(run_demo).parameters
    assert args.ids == defaults["ids"].default == DEMO_IDS == 252
    assert defaults["test_ids"].default == DEMO_TEST_IDS == 52


def test_the_demo_states_each_target_and_whether_it_is_met():
    from vireid.demo import TARGETS, target_lines

    trained, untrained = {"mean": {"rank1": 41.0, "mAP": 22.5}}, {"mean": {"rank1": 4.0, "mAP": 6.0}}
    lines = target_lines(trained, untrained, seconds=310.0)
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["met", "not met", "met", "not met"]
    assert "10.25x  target >= 5x" in lines[2] and f">= {TARGETS['rank1']:g}%" in lines[0]
