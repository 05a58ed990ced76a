"""A Milvus gallery on the real Milvus standalone binary that the PyPI package `milvus` ships (Milvus 2.3, started
on a free loopback port with its data in the test's temp folder): HNSW, label filter, delete, re-embedding swap."""

import socket
import time

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
milvus = pytest.importorskip("milvus", reason="the PyPI package `milvus` (an embedded Milvus 2.3 standalone server) "
                                              "is not installed: pip install 'milvus==2.3.5' to run this test")

from indexing import Item  # noqa: E402
from indexing.milvus_backend import MilvusGallery, MilvusSetup, close_clients  # noqa: E402
from oml.inference import OnnxExtractor  # noqa: E402

START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus-standalone")))
    server.listen_port = _free_port()
    started = time.monotonic()
    try:
        server.start()
        server.wait_started(timeout=START_TIMEOUT_S * 1000)
    except Exception as error:
        server.stop()
        pytest.skip(f"the Milvus standalone server of the `milvus` package did not start within {START_TIMEOUT_S} s "
                    f"here: {error}")
    print(f"Milvus standalone started in {time.monotonic() - started:.1f} s")
    yield MilvusSetup(uri=f"http://127.0.0.1:{server.listen_port}")
    close_clients()
    server.stop()


def test_gallery_on_milvus_standalone(standalone, tmp_path, tiny_text_model, other_text_model, debian_rows):
    tiny = OnnxExtractor.load(tiny_text_model, device="cpu", num_threads=1)
    other = OnnxExtractor.load(other_text_model, device="cpu", num_threads=1)
    items = [Item(key=package, text=description, label=section) for package, section, _, description in
             debian_rows[:150]]
    gallery = MilvusGallery.create(standalone, tmp_path, "standalone", tiny.manifest, index_spec="HNSW16")
    gallery.upsert(items, tiny.embed_texts([item.text for item in items]))
    gallery.flush()
    assert len(gallery) == 150
    top = gallery.search(tiny.embed_texts([items[7].text]), k=3)[0]
    assert top[0].key == items[7].key and top[0].distance == pytest.approx(0.0, abs=1e-3)
    label = items[7].label
    assert all(hit.label == label for hit in gallery.search(tiny.embed_texts(["editor"]), k=5, labels=[label])[0])
    assert gallery.delete_many([items[0].key, "not-there"]) == 1  # Milvus counts the keys asked for: normalised
    report = gallery.reembed(other, batch_size=64)
    assert report["items"] == 149 and gallery.manifest.embedding_size == 48
    again = MilvusGallery.open(standalone, tmp_path, "standalone")
    assert again.manifest.generation == 2 and len(again) == 149
    assert again.search(other.embed_texts([items[7].text]), k=1)[0][0].key == items[7].key
    again.drop()
