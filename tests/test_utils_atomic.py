import pytest

from oml.utils.atomic import atomic_write_json, atomic_writer


def test_failed_write_leaves_the_old_file_and_no_temporary_files(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as handle:
            handle.write(b'{"version": 2, "half')
            raise RuntimeError("killed mid-write")
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"version":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
