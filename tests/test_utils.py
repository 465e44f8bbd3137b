"""The file-system helpers of ``monai_seg.utils``: atomic writes and the guard of existing outputs."""

from __future__ import annotations

import os

import pytest

from monai_seg.utils import atomic_save, atomic_write_csv, atomic_write_text, check_free


def test_atomic_save_replaces_only_a_complete_file(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_text(path, "old\n")
    suffixes = []

    def fail_midway(tmp: str) -> None:
        suffixes.append(os.path.splitext(tmp)[1])
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(path, fail_midway)
    assert suffixes == [".csv"]  # the temporary file keeps the suffix, for writers that choose the format by it
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["table.csv"]  # no temporary file left behind
    atomic_write_csv(path, ["a", "b"], [(1, 2)])
    assert path.read_text() == "a,b\n1,2\n"


def test_check_free_names_the_existing_path_and_removes_it_on_overwrite(tmp_path):
    folder, file, missing = tmp_path / "out", tmp_path / "model.pt", tmp_path / "missing"
    (folder / "sub").mkdir(parents=True)
    file.write_bytes(b"x")
    paths = [str(missing), str(folder), str(file)]
    with pytest.raises(FileExistsError, match=f"{folder} exists; pass overwrite=True"):
        check_free(paths, overwrite=False)
    assert folder.exists() and file.exists()
    check_free(paths, overwrite=True)
    assert not folder.exists() and not file.exists()
