"""Re-embedding through the one `embed_items`: text and image galleries, and items that cannot be embedded."""

import numpy as np
import pytest

from oml.inference import OnnxExtractor

from indexing import Gallery, GalleryError, Item


def test_items_a_text_model_cannot_embed_stop_the_reembedding_and_leave_the_old_model(
    tmp_path, tiny_text_model, other_text_model
):
    old = OnnxExtractor.load(tiny_text_model, num_threads=1)
    new = OnnxExtractor.load(other_text_model, num_threads=1)
    texts = ["first text", "second text"]
    with Gallery.create(tmp_path, "texts", old.manifest, index_spec="Flat") as gallery:
        gallery.upsert([Item("a", text=texts[0]), Item("b", text=texts[1]), Item("no-text", label=3)],
                       np.concatenate([old.embed_texts(texts), old.embed_texts(["anything"])]))
        with pytest.raises(GalleryError, match="1 items cannot be embedded by the text model.*'no-text'"):
            gallery.reembed(new, batch_size=2)
        assert gallery.info()["model"] == "tiny_text" and gallery.manifest.generation == 1
        assert gallery.search(old.embed_texts([texts[1]]), k=1)[0][0].key == "b"
    with Gallery.open(tmp_path, "texts") as reopened:
        assert reopened.manifest.generation == 1 and len(reopened) == 3


def test_image_gallery_is_reembedded_and_an_unreadable_image_is_named(tmp_path, tiny_image_model, omniglot_dir):
    extractor = OnnxExtractor.load(tiny_image_model, num_threads=1)
    paths = sorted((omniglot_dir / "Greek" / "character01").iterdir())[:5]
    with Gallery.create(tmp_path, "glyphs", extractor.manifest, index_spec="exact") as gallery:
        gallery.upsert([Item(p.name, path=str(p)) for p in paths], extractor.embed_images(paths))
        report = gallery.reembed(extractor, batch_size=2)
        assert report["items"] == 5 and gallery.manifest.generation == 2
        assert gallery.search(extractor.embed_images(paths[3:4]), k=1)[0][0].key == paths[3].name
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        gallery.upsert([Item("broken", path=str(broken))], np.zeros((1, gallery.embedding_size), np.float32))
        with pytest.raises(GalleryError, match="by the image model.*'broken'"):
            gallery.reembed(extractor)
        assert gallery.manifest.generation == 2 and len(gallery) == 6
