import pytest

from indexing.sources import SourceProblems, iter_items


def test_jsonl_lines_become_items_and_bad_lines_are_reported(tmp_path):
    source = tmp_path / "items.jsonl"
    source.write_text(
        '{"key": "a", "text": "hello", "label": 3, "payload": {"url": "u"}}\n'
        "\n"
        '{"path": "img/x.png", "label": "cat"}\n'
        "[1, 2]\n"
        '{"key": "b"}\n'
        '{"key": "c", "text": "t", "colour": "red"}\n'
    )
    problems = SourceProblems()
    items = list(iter_items(source, problems=problems))
    assert [(i.key, i.text, i.label, i.payload) for i in items[:1]] == [("a", "hello", 3, {"url": "u"})]
    assert items[1].key == "img/x.png" and items[1].path == str((tmp_path / "img" / "x.png").resolve())
    assert problems.count == 3
    assert [where for where, _ in problems.examples] == ["items.jsonl line 4", "items.jsonl line 5", "items.jsonl line 6"]
    assert "unknown fields ['colour']" in problems.examples[2][1]


def test_oml_csv_with_texts_keys_default_to_row_and_extra_columns_go_to_payload(tmp_path):
    source = tmp_path / "df.csv"
    source.write_text("text,label,split,is_query\nfirst,1,train,\nsecond,,validation,True\n,2,train,\n")
    problems = SourceProblems()
    items = list(iter_items(source, problems=problems))
    assert [(i.key, i.text, i.label) for i in items] == [("row-1", "first", 1), ("row-2", "second", None)]
    assert items[1].payload == {"split": "validation", "is_query": True}
    assert problems.examples == [("df.csv row 3", "row has neither a path nor a text")]


def test_image_folder_keys_are_relative_paths_and_labels_parent_folders(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("b/2.png", "b/1.JPG", "a/deep/3.webp", "top.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    items = list(iter_items(tmp_path))
    assert [(i.key, i.label) for i in items] == [("top.png", None), ("a/deep/3.webp", "deep"), ("b/1.JPG", "b"),
                                                 ("b/2.png", "b")]
    assert items[0].fingerprint is not None


def test_content_hash_changes_with_file_size_and_text(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"one")
    before = next(iter(iter_items(tmp_path))).content_hash
    image.write_bytes(b"longer content")
    assert next(iter(iter_items(tmp_path))).content_hash != before


def test_unsupported_or_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="items source not found"):
        iter_items(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_bytes(b"")
    with pytest.raises(ValueError, match="expected a .csv, a .jsonl, a .parquet or a folder"):
        iter_items(tmp_path / "data.xlsx")
    (tmp_path / "bad.csv").write_text("label,colour\n1,red\n")
    with pytest.raises(ValueError, match="needs a 'path' or a 'text' column"):
        list(iter_items(tmp_path / "bad.csv"))
