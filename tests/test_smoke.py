from fastapi.testclient import TestClient

from server.app import create_app


def test_health_answers_ok():
    assert TestClient(create_app()).get("/health").json() == {"status": "ok"}
