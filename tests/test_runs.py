"""Run folders: the lock, config.json's reader, stale temporary files, history.csv's reader."""

import subprocess
import sys

import pytest

from alexnet import runs
from alexnet.errors import UsageError

CLAIM = """
import sys
from alexnet import runs
from alexnet.errors import UsageError
try:
    runs.new_run_dir(sys.argv[1], "alexnet")
except UsageError as error:
    print(error)
    sys.exit(2)
"""


def test_a_folder_in_use_is_refused_to_a_second_process_whatever_the_timing(tmp_path):
    run_dir = runs.new_run_dir(str(tmp_path / "run"), "alexnet")  # locked by this process, no config.json yet
    try:
        other = subprocess.run([sys.executable, "-c", CLAIM, str(run_dir)], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode == 2 and "is in use by another alexnet process" in other.stdout
    finally:
        runs.unlock_run_dir(run_dir)
    again = subprocess.run([sys.executable, "-c", CLAIM, str(run_dir)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout  # released: a later process may use it


def test_the_lock_goes_with_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", CLAIM + "\nimport time; print('held', flush=True); "
                               "time.sleep(60)", str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=30)
    runs.lock_run_dir(tmp_path / "run")  # no stale claim after kill -9
    runs.unlock_run_dir(tmp_path / "run")


@pytest.mark.parametrize("content", ["{", "[]", '{"settings": 3}', "\xff\xfe"])
def test_a_damaged_config_json_names_the_file(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content.encode("latin1"))
    with pytest.raises(UsageError, match=r"config.json is damaged .*; the run cannot be resumed"):
        runs.read_run_config(tmp_path, "resumed")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / ".best.tmp4242.keras", tmp_path / ".metrics.json.abc123.tmp",
             tmp_path / "checkpoints" / ".epoch-0003.tmp99.keras"]
    kept = [tmp_path / "best.keras", tmp_path / "checkpoints" / "epoch-0002.keras", tmp_path / ".lock"]
    for path in stale + kept:
        path.write_text("x")
    assert sorted(runs.remove_stale_temporaries(tmp_path)) == sorted(p.name for p in stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_history_reader_survives_bad_cells(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_accuracy\n0,1.5,0.3\n1,nan,oops\n")
    rows = runs.read_history(tmp_path)
    assert rows[0] == {"epoch": 0.0, "loss": 1.5, "val_accuracy": 0.3}
    assert rows[1]["epoch"] == 1.0 and rows[1]["val_accuracy"] != rows[1]["val_accuracy"]  # NaN
    assert runs.read_history(tmp_path / "nowhere") == []


def test_write_atomic_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(UsageError, match=f"the folder {tmp_path / 'missing'} does not exist"):
        runs.write_atomic(tmp_path / "missing" / "x.json", "{}")


def test_overwrite_removes_what_runs_wrote_and_keeps_the_rest(tmp_path):
    run = tmp_path / "run"
    for name in ("config.json", "history.csv", "metrics.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    for folder in ("checkpoints", "evaluation", "evaluation-cifar10-jpeg", "export", "notes"):
        (run / folder).mkdir()
        (run / folder / "file").write_text("x")
    (run / "mine.txt").write_text("keep")

    runs.new_run_dir(run, "alexnet", overwrite=True)
    runs.unlock_run_dir(run)

    assert sorted(p.name for p in run.iterdir()) == [".lock", "mine.txt", "notes"]
