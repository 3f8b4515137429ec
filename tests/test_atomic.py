import pytest

from tasks.atomic import atomic_dir, atomic_file, write_json


def test_atomic_file_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_file_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_atomic_dir_leaves_no_half_written_dataset(tmp_path):
    target = tmp_path / "demo"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("partial")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]


def test_atomic_dir_swaps_in_one_step_and_cleans_a_killed_runs_leftovers(tmp_path):
    target = tmp_path / "crops"
    with atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("old")
    # What a SIGKILL mid-write leaves: a half-written temporary folder and file beside the outputs.
    (tmp_path / ".crops.abcd1234.tmp").mkdir()
    (tmp_path / ".crops.abcd1234.tmp" / "half.txt").write_text("ha")
    (tmp_path / ".index.csv.zz99yy88.tmp").write_text("half")
    (tmp_path / ".crops.more.abcd1234.tmp").mkdir()  # another output's temporary: not ours to remove
    with atomic_dir(target) as tmp:
        assert not (tmp_path / ".crops.abcd1234.tmp").exists()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    write_json(tmp_path / "index.csv", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".crops.more.abcd1234.tmp", "crops", "index.csv"]


def test_a_folder_parked_by_the_fallback_swap_comes_back(tmp_path):
    """Where the exchange is unsupported the old folder is parked first; a kill then is undone on the next run."""
    (tmp_path / ".crops.old.tmp").mkdir()
    (tmp_path / ".crops.old.tmp" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "crops"):
        raise RuntimeError("the next run fails too")
    assert (tmp_path / "crops" / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops"]
