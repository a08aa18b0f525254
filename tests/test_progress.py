import io
import sys

from conftest import tiny_config

from modicl.progress import LogProgress, progress_bar
from modicl.training import train


def test_log_progress_writes_plain_lines_at_most_once_per_interval(monkeypatch):
    clock = iter(range(0, 1000, 4))  # every call to the clock advances 4 s
    monkeypatch.setattr("modicl.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = LogProgress(total=100, desc="train", unit="step", interval=30, file=out)
    for _ in range(20):
        bar.update(5)
    bar.set_postfix(loss="0.50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 4  # 80 s of updates at one line per 30 s, plus the final line
    assert lines[-1].startswith("train: 100/100 step (100.0 %)") and lines[-1].endswith("loss=0.50")


def test_training_with_stderr_in_a_file_writes_lines_not_redraws(tmp_path, capsys):
    assert not sys.stderr.isatty()
    assert isinstance(progress_bar(total=3), LogProgress)
    train(tiny_config(steps=40, eval_every=20), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.strip().splitlines()[-1].startswith("train: 40/40 step")


def test_named_progress_writes_lines_even_on_a_terminal(tmp_path, capsys, monkeypatch):
    # runs that share one stderr (a sweep's worker processes) must not draw bars over each other
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not isinstance(progress_bar(total=3), LogProgress)
    assert isinstance(progress_bar(total=3, lines=True), LogProgress)
    monkeypatch.undo()
    train(tiny_config(steps=40, eval_every=20), tmp_path / "run", progress="seed=3")
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("seed=3: 40/40 step (100.0 %)")
