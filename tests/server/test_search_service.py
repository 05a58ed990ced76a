"""Search options on a live server: `rerank: true` runs the configured `IRetrievalPostprocessor` (here OML's
ConstantThresholding), and `OML_PROTECT_SEARCH` puts search behind the API key."""

import pytest

from server.search_service import load_postprocessor
from server_helpers import API_KEY, ServerProcess, items_from, models_copy


@pytest.fixture(scope="module")
def thresholding_server(exported_models, tmp_path_factory, package_texts):
    root = tmp_path_factory.mktemp("rerank-server")
    server = ServerProcess(root / "data", models_copy(exported_models, root / "models", names=("minilm_l6",)),
                           root / "server.log",
                           env={"OML_PROTECT_SEARCH": "1", "OML_POSTPROCESSOR": "oml.retrieval:ConstantThresholding",
                                "OML_POSTPROCESSOR_ARGS": '{"th": 1.0}', "OML_WATCH_INTERVAL_S": "0"})
    server.start()
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "rerank", "model": "minilm_l6", "index": "Flat"}).status_code == 201
        assert client.post("/galleries/rerank/items", json={"items": items_from(package_texts[:12])}).status_code == 200
    yield server
    server.stop()


def test_rerank_applies_the_postprocessor_and_plain_search_does_not(thresholding_server, package_texts):
    query = {"texts": [package_texts[2]["description"], "zzzz qqqq"], "k": 12}
    with thresholding_server.client(headers=thresholding_server.headers) as client:
        plain = client.post("/galleries/rerank/search", json=query).json()["results"]
        refined = client.post("/galleries/rerank/search", json={**query, "rerank": True})
    assert refined.status_code == 200, refined.text
    refined = refined.json()["results"]
    assert [len(row) for row in plain] == [12, 12]
    for plain_row, refined_row in zip(plain, refined):
        assert refined_row == [hit for hit in plain_row if hit["distance"] < 1.0]
    assert refined[0][0]["key"] == package_texts[2]["package"]
    assert len(refined[0]) < 12


def test_postprocessor_setting_is_checked():
    assert load_postprocessor(None, None) is None
    with pytest.raises(ValueError, match="package.module:factory"):
        load_postprocessor("oml.retrieval", None)
    with pytest.raises(ValueError, match="not an IRetrievalPostprocessor"):
        load_postprocessor("collections:OrderedDict", None)
    with pytest.raises(ValueError, match="JSON"):
        load_postprocessor("oml.retrieval:ConstantThresholding", "{th: 1}")


def test_protected_search_needs_the_key_and_health_stays_open(thresholding_server):
    with thresholding_server.client() as client:
        assert client.post("/galleries/rerank/search", json={"text": "editor"}).status_code == 401
        assert client.post("/galleries/rerank/search", json={"text": "editor"},
                           headers={"X-API-Key": "nope"}).status_code == 403
        assert client.post("/galleries/rerank/search", json={"text": "editor"},
                           headers={"X-API-Key": API_KEY}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
