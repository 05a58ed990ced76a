"""Concurrent writers on overlapping keys while others search: the final state is a serial replay of the
acknowledged operations in an order real time allows (see `concurrent`), no 5xx, and every invariant holds."""

from concurrent_writers import check_with_invariants, run_concurrent_writers

from stages import TEXT_MODEL


def test_concurrent_writers_end_in_a_serial_replay_of_what_was_acknowledged(live):
    server = live.server
    with server.client() as client:
        reply = client.post("/galleries", json={"name": "crowd", "model": TEXT_MODEL, "index": "Flat"})
        assert reply.status_code == 201, reply.text
        version = reply.json()["model_version"]
    result = run_concurrent_writers(server.url, server.data_dir, "crowd", writers=4, searchers=2,
                                    ops_per_writer=60, keys=10)
    assert result["problems"] == [], result["problems"]
    assert result["operations"] == 4 * 60
    assert check_with_invariants(server.url, server.data_dir, result, TEXT_MODEL, version, live.ledger) == []
