"""Fixtures of the reliability suite: real server processes on loopback (fake models, so they start and embed
fast), a data folder on a small tmpfs for disk-full cases."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import random  # noqa: E402

import pytest  # noqa: E402

from invariants import Ledger  # noqa: E402
from rel_harness import RelServer  # noqa: E402
from stages import SERVER_ENV, Context, ensure_galleries, prepare  # noqa: E402

SEED = 13


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """One fake-model server for the kill and concurrency cases, with the ledger of everything acknowledged to it."""
    root = tmp_path_factory.mktemp("reliability")
    (root / "models").mkdir()
    server = RelServer(root / "data", root / "models", root / "server.log", env=SERVER_ENV)
    ctx = Context(server, Ledger(), random.Random(SEED))
    prepare(ctx)
    server.start()
    ensure_galleries(ctx)
    yield ctx
    server.kill()
