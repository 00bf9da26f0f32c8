"""Progress off a terminal is a line every few percent, not a bar redrawn per update."""
import io

from scaling import progress


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_off_a_terminal_progress_is_a_few_lines():
  stream = io.StringIO()
  bar = progress.bar(total=1000, initial=0, desc="gpt size=1", unit="step", stream=stream)
  assert isinstance(bar, progress.LineProgress)
  for _ in range(1000):
    bar.update(1)
    bar.set_postfix(loss="2.0000")
  bar.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 10 and "\r" not in stream.getvalue()
  assert lines[-1].startswith("gpt size=1: 1000/1000 steps (100%)") and lines[-1].endswith("loss=2.0000")


def test_a_resumed_bar_counts_from_where_it_was_and_writes_messages():
  stream = io.StringIO()
  bar = progress.bar(total=10, initial=7, desc="sweep s", unit="trial", stream=stream)
  bar.write("  trial abc: done")
  bar.update(3)
  assert stream.getvalue().splitlines() == ["  trial abc: done", stream.getvalue().splitlines()[1]]
  assert stream.getvalue().splitlines()[1].startswith("sweep s: 10/10 trials (100%)")


def test_on_a_terminal_it_is_tqdm():
  from tqdm import tqdm
  bar = progress.bar(total=5, initial=0, desc="x", unit="step", stream=_Terminal())
  assert isinstance(bar, tqdm)
  bar.close()
