"""The OpenAI-compatible API on a real server, driven by the unmodified `openai` client: embeddings as floats and
base64, the same vectors as the search path, usage from the model's tokenizer, `/v1/models`, errors in OpenAI's
shape (the client raises its own exceptions with our messages) and the API key as a bearer token."""

import base64
from pathlib import Path
from typing import Iterator, List

import httpx
import numpy as np
import openai
import pytest

from fake_models import write_reranker
from oml.artifact import ModelManifest
from oml.inference.texts import TextTokenizer
from server_helpers import API_KEY, ServerProcess, models_copy

MODEL = "minilm_l6"
MAX_INPUTS = 16
MAX_TEXT_CHARS = 300
TEXTS = ["Vi IMproved - enhanced vi editor", "command line tool for transferring data with URL syntax",
         "GNU Image Manipulation Program", "a text editor for programmers"]


@pytest.fixture(scope="module")
def server(exported_models, tmp_path_factory) -> Iterator[ServerProcess]:
    """Search protected by the API key (so the bearer token matters), a small input limit, and a reranker."""
    root = tmp_path_factory.mktemp("openai-server")
    models_dir = models_copy(exported_models, root / "models")
    write_reranker(models_dir, "pairs_reranker", 1, "embeddings", MODEL, 1, top_n=5)  # a manifest only
    process = ServerProcess(root / "data", models_dir, root / "server.log",
                            env={"OML_PROTECT_SEARCH": "1", "OML_MAX_EMBEDDING_INPUTS": str(MAX_INPUTS),
                                 "OML_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS), "OML_WATCH_INTERVAL_S": "0"})
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer(exported_models) -> TextTokenizer:
    folder = exported_models / MODEL / "1"
    preprocessing = ModelManifest.load(folder).preprocessing
    return TextTokenizer(Path(folder) / preprocessing["tokenizer"], preprocessing["max_length"])


def vectors(reply) -> np.ndarray:
    assert [row.index for row in reply.data] == list(range(len(reply.data)))
    return np.array([row.embedding for row in reply.data], dtype=np.float32)


def test_float_embeddings_in_openai_shape_with_tokenizer_usage(server, client, tokenizer):
    reply = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert reply.object == "list" and reply.model == MODEL
    assert all(row.object == "embedding" for row in reply.data)
    rows = vectors(reply)
    assert rows.shape == (len(TEXTS), 384)
    assert np.linalg.norm(rows, axis=1) == pytest.approx(1.0, abs=1e-4)
    expected_tokens = sum(len(encoding.ids) for encoding in tokenizer.encode(TEXTS))
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == expected_tokens

    single = client.embeddings.create(model=f"{MODEL}:1", input=TEXTS[0], encoding_format="float")
    assert single.model == MODEL and len(single.data) == 1
    np.testing.assert_allclose(vectors(single)[0], rows[0], atol=1e-5)

    raw = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": TEXTS[:1]},
                     headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert set(raw) == {"object", "data", "model", "usage"}
    assert set(raw["data"][0]) == {"object", "index", "embedding"} and set(raw["usage"]) == {"prompt_tokens",
                                                                                             "total_tokens"}


def test_base64_embeddings_decode_to_the_float_ones(client):
    floats = vectors(client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float"))
    # without encoding_format the client asks for base64 and decodes it itself
    decoded_by_client = vectors(client.embeddings.create(model=MODEL, input=TEXTS))
    np.testing.assert_allclose(decoded_by_client, floats, atol=1e-6)
    explicit = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")
    assert all(isinstance(row.embedding, str) for row in explicit.data)
    decoded = np.stack([np.frombuffer(base64.b64decode(row.embedding), dtype="<f4") for row in explicit.data])
    np.testing.assert_allclose(decoded, floats, atol=1e-6)


def test_vectors_match_the_embeddings_the_search_path_uses(server, client):
    floats = vectors(client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float"))
    with server.client(headers=server.headers) as http:
        assert http.post("/galleries", json={"name": "openai-texts", "model": MODEL}).status_code == 201
        try:
            items = [{"key": f"t{i}", "text": text} for i, text in enumerate(TEXTS)]
            assert http.post("/galleries/openai-texts/items", json={"items": items}).status_code == 200
            hits = http.post("/galleries/openai-texts/search", json={"text": TEXTS[0], "k": len(TEXTS)}).json()
        finally:
            http.delete("/galleries/openai-texts")
    by_key = {hit["key"]: hit["distance"] for hit in hits["results"][0]}
    for i in range(len(TEXTS)):
        assert by_key[f"t{i}"] == pytest.approx(float(np.linalg.norm(floats[0] - floats[i])), abs=1e-4)


def test_models_list_and_retrieve(client):
    listed = client.models.list()
    assert [model.id for model in listed.data] == [MODEL]  # the image model and the reranker do not embed texts
    assert listed.data[0].object == "model" and listed.data[0].owned_by == "oml-server"
    assert listed.data[0].created > 0
    assert client.models.retrieve(MODEL).id == MODEL


def test_unknown_model_is_not_found_with_our_message(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input=["hello"])
    assert caught.value.status_code == 404
    assert "unknown model 'text-embedding-3-small'" in caught.value.body["message"]
    assert "minilm_l6" in caught.value.body["message"]
    assert caught.value.code == "not_found" and caught.value.type == "not_found_error"
    with pytest.raises(openai.NotFoundError, match="no version 9"):
        client.embeddings.create(model=f"{MODEL}:9", input=["hello"])
    with pytest.raises(openai.NotFoundError, match="is a reranker, not an extractor"):
        client.embeddings.create(model="pairs_reranker", input=["hello"])
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("tiny_image_unknown")


def test_image_model_is_a_modality_error(client):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(model="tiny_image", input=["hello"])
    assert caught.value.code == "modality_mismatch"
    assert "POST /embeddings/image" in caught.value.body["message"]


@pytest.mark.parametrize("texts, code", [
    (["hello"] * (MAX_INPUTS + 1), "too_many_inputs"),
    (["hello", ""], "empty_text"),
    (["x" * (MAX_TEXT_CHARS + 1)], "text_too_long"),
    ([], "empty_input"),
])
def test_bad_inputs_are_4xx_with_the_reason(client, texts: List[str], code: str):
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)) as caught:
        client.embeddings.create(model=MODEL, input=texts)
    assert caught.value.code == code
    assert caught.value.body["message"]


def test_token_ids_and_other_dimensions_are_refused_but_the_model_size_is_accepted(client):
    with pytest.raises(openai.UnprocessableEntityError, match="token ids are not accepted") as caught:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    assert caught.value.param == "input"
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions=64 is not supported"):
        client.embeddings.create(model=MODEL, input=["hello"], dimensions=64)
    assert len(client.embeddings.create(model=MODEL, input=["hello"], dimensions=384, user="u1").data) == 1


def test_api_key_as_bearer_or_header_and_error_shapes(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        wrong.embeddings.create(model=MODEL, input=["hello"])
    assert caught.value.type == "permission_error" and caught.value.code == "forbidden"

    with httpx.Client(base_url=server.url, timeout=60) as http:
        missing = http.post("/v1/embeddings", json={"model": MODEL, "input": "hello"})
        assert missing.status_code == 401
        assert missing.json() == {"error": {"message": missing.json()["error"]["message"],
                                            "type": "authentication_error", "param": None, "code": "unauthorized"}}
        with_header = http.post("/v1/embeddings", json={"model": MODEL, "input": "hello"},
                                headers={"X-API-Key": API_KEY})
        assert with_header.status_code == 200
        malformed = http.post("/v1/embeddings", content=b"{not json", headers={"X-API-Key": API_KEY,
                                                                               "content-type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
        assert http.get("/v1/nowhere", headers={"X-API-Key": API_KEY}).json()["error"]["code"] == "not_found"
        # the other routes keep their own error shape
        assert http.get("/galleries/nowhere", headers={"X-API-Key": API_KEY}).json() == {
            "detail": "unknown gallery 'nowhere'", "error": "not_found"}
