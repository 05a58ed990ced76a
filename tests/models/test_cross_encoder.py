"""`join_token_pairs` and `HFCrossEncoder` on the bundled MiniLM."""

from pathlib import Path

import numpy as np
import pytest
import torch

from oml.models.meta import HFCrossEncoder, join_token_pairs
from oml.registry.postprocessors import PAIRWISE_MODELS_REGISTRY, get_pairwise_model

CLS, SEP, PAD = 101, 102, 0


def _join(queries, items, max_length=16):
    return join_token_pairs(queries, items, cls_id=CLS, sep_id=SEP, pad_id=PAD, max_length=max_length)


def test_join_builds_one_sequence_per_pair_with_token_types() -> None:
    joined = _join([[CLS, 1, 2, SEP], [3]], [[CLS, 4, SEP], [5, 6, 7]])
    assert joined["input_ids"].tolist() == [[CLS, 1, 2, SEP, 4, SEP, PAD], [CLS, 3, SEP, 5, 6, 7, SEP]]
    assert joined["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 0], [1] * 7]
    assert joined["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert all(v.dtype == np.int64 for v in joined.values())


def test_join_truncates_the_query_first_but_leaves_the_item_half() -> None:
    long_query, long_item = list(range(1, 21)), list(range(31, 51))
    room = 16 - 3
    both_long = _join([long_query], [long_item])["token_type_ids"][0]
    assert len(both_long) == 16 and (both_long == 1).sum() == (room + 1) // 2 + 1  # item tokens + its [SEP]
    short_item = _join([long_query], [[31, 32]])["input_ids"][0].tolist()
    assert short_item == [CLS, *long_query[: room - 2], SEP, 31, 32, SEP]
    short_query = _join([[1, 2]], [long_item])["input_ids"][0].tolist()
    assert short_query == [CLS, 1, 2, SEP, *long_item[: room - 2], SEP]


def test_join_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="2 queries but 1 items"):
        _join([[1], [2]], [[3]])
    with pytest.raises(ValueError, match="max_length must be at least 4"):
        _join([[1]], [[2]], max_length=3)


@pytest.fixture(scope="module")
def cross_encoder() -> HFCrossEncoder:
    torch.manual_seed(0)
    return get_pairwise_model("hf_cross_encoder", max_length=24).eval()


def test_registry_names_the_cross_encoder(cross_encoder: HFCrossEncoder) -> None:
    assert PAIRWISE_MODELS_REGISTRY["hf_cross_encoder"] is HFCrossEncoder
    assert cross_encoder.max_length == 24 and cross_encoder.pooling == "mean"
    assert cross_encoder.special_ids == {"cls_id": CLS, "sep_id": SEP, "pad_id": PAD}


def test_forward_joins_with_join_token_pairs(cross_encoder: HFCrossEncoder) -> None:
    tokenizer = cross_encoder.tokenizer
    queries = ["a small dog runs", "password reset " * 20]
    items = ["the puppy chased a ball in the park " * 5, "login"]
    padded = [tokenizer(texts, padding="max_length", truncation=True, max_length=24, return_tensors="pt")
              for texts in (queries, items)]
    joined = cross_encoder.join(*padded)
    expected = join_token_pairs(tokenizer(queries)["input_ids"], tokenizer(items)["input_ids"], max_length=24,
                                **cross_encoder.special_ids)
    for key, value in expected.items():
        assert joined[key].numpy().tolist() == value.tolist(), key
    with torch.no_grad():
        logits = cross_encoder(*padded)
        assert torch.allclose(logits, cross_encoder.forward_joined(joined))
        assert torch.allclose(cross_encoder.predict(*padded), torch.sigmoid(logits))
    assert logits.shape == (2,)


def test_cross_encoder_trains_and_reloads_its_weights(cross_encoder: HFCrossEncoder, tmp_path: Path) -> None:
    tokenizer = cross_encoder.tokenizer
    batch = [tokenizer(["a cat", "a dog"], padding=True, return_tensors="pt") for _ in range(2)]
    cross_encoder.train()
    try:
        loss = cross_encoder(*batch).sum()
        loss.backward()
        assert cross_encoder.head.weight.grad is not None
        assert cross_encoder.encoder.embeddings.word_embeddings.weight.grad is not None
    finally:
        cross_encoder.zero_grad(set_to_none=True)
        cross_encoder.eval()
    path = tmp_path / "ce.pth"
    torch.save(cross_encoder.state_dict(), path)
    reloaded = HFCrossEncoder(max_length=24, weights=path).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded.predict(*batch), cross_encoder.predict(*batch))


def test_num_layers_keeps_the_first_layers_of_the_encoder() -> None:
    torch.manual_seed(0)
    shallow = HFCrossEncoder(num_layers=2, max_length=24).eval()
    full = HFCrossEncoder(max_length=24).eval()
    assert shallow.num_layers == 2 and len(shallow.encoder.encoder.layer) == 2 and full.num_layers == 6
    assert shallow.encoder.config.num_hidden_layers == 2
    kept, cut = shallow.encoder.encoder.layer[1].state_dict(), full.encoder.encoder.layer[1].state_dict()
    assert all(torch.equal(kept[name], cut[name]) for name in kept)  # the same pretrained layer, not a new one
    batch = shallow.tokenizer(["a small dog"], ["a puppy"], return_tensors="pt")
    joined = {k: v for k, v in batch.items()}
    with torch.no_grad():
        assert shallow.forward_joined(joined).shape == (1,)


def test_cross_encoder_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="num_layers must be between 1 and 6"):
        HFCrossEncoder(num_layers=7)
    with pytest.raises(ValueError, match="pooling must be one of"):
        HFCrossEncoder(pooling="max")
    with pytest.raises(ValueError, match="max_length must be at least 4"):
        HFCrossEncoder(max_length=2)
