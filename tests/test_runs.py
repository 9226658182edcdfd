"""Run folders: the lock, config.json's reader, stale temporary files, history.csv's reader."""

import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.errors import UsageError
from alexnet.files import write_atomic
from alexnet.runs import RunFolder

CLAIM = """
import sys
from alexnet.errors import UsageError
from alexnet.files import write_atomic
from alexnet.runs import RunFolder
try:
    RunFolder.create(sys.argv[1], "alexnet")
except UsageError as error:
    print(error)
    sys.exit(2)
"""


def test_a_folder_in_use_is_refused_to_a_second_process_whatever_the_timing(tmp_path):
    folder = RunFolder.create(str(tmp_path / "run"), "alexnet")  # locked by this process, no config.json yet
    run_dir = folder.path
    try:
        other = subprocess.run([sys.executable, "-c", CLAIM, str(run_dir)], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode == 2 and "is in use by another alexnet process" in other.stdout
    finally:
        folder.unlock()
    again = subprocess.run([sys.executable, "-c", CLAIM, str(run_dir)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout  # released: a later process may use it


def test_the_lock_goes_with_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", CLAIM + "\nimport time; print('held', flush=True); "
                               "time.sleep(60)", str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=30)
    RunFolder(tmp_path / "run").lock()  # no stale claim after kill -9
    RunFolder(tmp_path / "run").unlock()


@pytest.mark.parametrize("content", ["{", "[]", '{"settings": 3}', "\xff\xfe"])
def test_a_damaged_config_json_names_the_file(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content.encode("latin1"))
    with pytest.raises(UsageError, match=r"config.json is damaged .*; the run cannot be resumed"):
        RunFolder(tmp_path).read_config("resumed")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / ".best.tmp4242.keras", tmp_path / ".metrics.json.abc123.tmp",
             tmp_path / "checkpoints" / ".epoch-0003.tmp99.keras"]
    kept = [tmp_path / "best.keras", tmp_path / "checkpoints" / "epoch-0002.keras", tmp_path / ".lock"]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(RunFolder(tmp_path).remove_stale_temporaries()) == sorted(p.name for p in stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_history_reader_survives_bad_cells(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_accuracy\n0,1.5,0.3\n1,nan,oops\n")
    rows = RunFolder(tmp_path).read_history()
    assert rows[0] == {"epoch": 0.0, "loss": 1.5, "val_accuracy": 0.3}
    assert rows[1]["epoch"] == 1.0 and rows[1]["val_accuracy"] != rows[1]["val_accuracy"]  # NaN
    assert RunFolder(tmp_path / "nowhere").read_history() == []


def test_write_atomic_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(UsageError, match=f"the folder {tmp_path / 'missing'} does not exist"):
        write_atomic(tmp_path / "missing" / "x.json", "{}")


def test_overwrite_removes_what_runs_wrote_and_keeps_the_rest(tmp_path):
    run = tmp_path / "run"
    for name in ("config.json", "history.csv", "metrics.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    for folder in ("checkpoints", "evaluation", "evaluation-cifar10-jpeg", "export", "notes"):
        (run / folder).mkdir()
        (run / folder / "file").write_text("x")
    (run / "mine.txt").write_text("keep")

    RunFolder.create(run, "alexnet", overwrite=True).unlock()

    assert sorted(p.name for p in run.iterdir()) == [".lock", "mine.txt", "notes"]


def test_the_run_folder_names_live_in_runs_py_alone():
    """Every run-folder file name is spelled in alexnet/runs.py and nowhere else in the package or bench/."""
    import alexnet

    root = Path(alexnet.__file__).resolve().parents[1]
    names = ('"history.csv"', '"metrics.json"', '"model.keras"', '"best.keras"', '"config.json"', '"state.json"',
             '"report.json"', '"checkpoints"')
    # A .keras file is a zip archive whose member config.json is Keras's, not the run's: sources.py reads it.
    keras_member = 'archive.read("config.json")'
    spelled = sorted({str(path.relative_to(root)) for folder in ("alexnet", "bench") for path in (root / folder).rglob("*.py")
                      if any(name in path.read_text().replace(keras_member, "") for name in names)})
    assert spelled == ["alexnet/runs.py"]
    assert keras_member in (root / "alexnet" / "model" / "sources.py").read_text()
