"""The error table: every listed error type, raised in a tiny app, gets its row's status and code."""

from typing import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from indexing import GalleryCorruptError, GalleryError
from server.error_handlers import install_error_handlers
from server.error_table import ERROR_TABLE
from server.errors import InvalidInputError

ROWS = list(ERROR_TABLE.items())


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """An app whose route raises whatever the test hands it."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.error = RuntimeError("nothing set")

    @app.get("/raise")
    def raise_it() -> None:
        raise app.state.error

    with TestClient(app, raise_server_exceptions=False) as client:
        client.raising = lambda error: setattr(app.state, "error", error) or client.get("/raise")
        yield client


@pytest.mark.parametrize("error_type, reply", ROWS, ids=[error_type.__name__ for error_type, _ in ROWS])
def test_each_error_type_gets_its_status_and_code(client, error_type, reply):
    answer = client.raising(error_type("what went wrong"))
    assert (answer.status_code, answer.json()) == (reply.status, {"detail": "what went wrong", "error": reply.code})


def test_an_unlisted_subclass_gets_the_row_of_its_nearest_listed_base(client):
    answer = client.raising(GalleryCorruptError("store.sqlite3", "truncated"))
    assert (answer.status_code, answer.json()["error"]) == (ERROR_TABLE[GalleryError].status,
                                                            ERROR_TABLE[GalleryError].code)


def test_a_request_error_may_name_a_finer_code(client):
    answer = client.raising(InvalidInputError("text is empty", code="empty_text"))
    assert (answer.status_code, answer.json()["error"]) == (422, "empty_text")


def test_an_unknown_error_is_a_500_that_names_only_its_type(client):
    answer = client.raising(KeyError("secret internals"))
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error: KeyError",
                                                           "error": "internal_error"}
