"""The benchmark says how much CPU processes outside it used during each phase: CPU of a
process it did not start (nor reap) counts, its own and its children's do not."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402
from report import _other_cpu_note  # noqa: E402

BURN = "import time\nwhile time.process_time() < 0.4: pass\n"


def test_a_process_the_benchmark_did_not_reap_counts_as_other(tmp_path: Path) -> None:
    done = tmp_path / "done"
    orphan = f"{BURN}open({str(done)!r}, 'w').close()\n"
    run._phase("orphan")
    # sh starts python in the background and exits: the burner is not our child
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" &', orphan], check=True)
    deadline = time.monotonic() + 60
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # its last ticks
    run._phase(None)
    assert run.OTHER_CPU_S.pop("orphan") >= 0.3


def test_the_benchmarks_own_children_are_its_own() -> None:
    _, own = run._cpu_marks()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert run._cpu_marks()[1] - own >= 0.4


def test_the_report_names_the_phases_that_shared_the_machine() -> None:
    assert "to itself" in _other_cpu_note({"ingest": 0.2, "series": 0.9})[0]
    note = _other_cpu_note({"ingest": 0.2, "series read": 12.5})[0]
    assert "series read 12.5" in note and "ingest" not in note
    assert _other_cpu_note(None) == [] and _other_cpu_note({}) == []


def test_an_orphan_of_the_benchmark_comes_back_to_it_and_counts_as_its_own(
    tmp_path: Path,
) -> None:
    """As MLflow's gunicorn workers may outlive their stopped master: with the benchmark as
    subreaper, their CPU is the benchmark's, not another program's."""
    done = tmp_path / "done"
    orphan = f"{BURN}open({str(done)!r}, 'w').close()\n"
    script = (
        f"import sys, time, subprocess\nsys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        "import run\nrun._adopt_orphans()\n_, own = run._cpu_marks()\n"
        f"subprocess.run(['sh', '-c', {sys.executable!r} + ' -c \"$0\" &', {orphan!r}])\n"
        f"while not __import__('os').path.exists({str(done)!r}): time.sleep(0.05)\n"
        "time.sleep(0.2)\nrun._reap_ended()\nprint(run._cpu_marks()[1] - own)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert float(out.stdout) >= 0.4, out
