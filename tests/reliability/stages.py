"""kill -9 at every stage: each stage drives one kind of work against a live server and records in a `Ledger` what
was acknowledged; `kill_at_random_moment` SIGKILLs the server at a moment drawn from the stage's window, restarts it
and runs `check_invariants`. Shared by `tests/reliability` (one moment per stage) and `benchmarks/reliability.py`
(the full matrix).

Stages: `bulk_json` (a JSON batch indexed by a job), `bulk_images` (multipart images, a job), `archive` (a tar of
images, a job), `adds` (single adds and upserts), `deletes`, `reembed` (a new model version re-embeds the galleries:
killed before, during or after the swap, with adds meanwhile), `galleries` (create, add, delete), `activation`
(switching the active version of a model without galleries), `index_save` (SIGTERM, whose shutdown saves the index
files, then SIGKILL inside it).
"""

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import httpx

from invariants import ABSENT, ItemState, Ledger, check_invariants
from rel_harness import RelServer, png_bytes, tar_of, write_fake_model

TEXT_MODEL, IMAGE_MODEL, PLAIN_MODEL = "text_model", "image_model", "plain_model"
SERVER_ENV = {"OML_SYNC_ITEMS_LIMIT": "8", "OML_JOB_CHUNK_SIZE": "16", "OML_FAKE_EMBED_DELAY_S": "0.02"}

Gone = (httpx.TransportError,)  # what a request sees when the server dies under it


class UnexpectedReply(AssertionError):
    """A reply no fault explains (e.g. a 5xx while the server was healthy)."""


def _expect(reply: httpx.Response, *statuses: int) -> httpx.Response:
    if reply.status_code not in statuses:
        raise UnexpectedReply(f"{reply.request.method} {reply.request.url.path} answered {reply.status_code}: "
                              f"{reply.text[:300]}")
    return reply


@dataclass
class Context:
    server: RelServer
    ledger: Ledger
    rng: random.Random
    run: int = 0
    models: Dict[str, int] = field(default_factory=dict)  # newest version written per model
    phase: str = ""  # what the stage saw last before the kill (e.g. before/during/after the swap)
    notes: List[str] = field(default_factory=list)
    jobs: List[tuple] = field(default_factory=list)  # (job id, gallery, ordered keys, states) still to settle

    def client(self) -> httpx.Client:
        return self.server.client(timeout=30)


def prepare(ctx: Context) -> None:
    """Models and the galleries the stages write to (run once on a fresh data folder)."""
    models_dir = ctx.server.models_dir
    for name, modality, versions in ((TEXT_MODEL, "text", 1), (IMAGE_MODEL, "image", 1), (PLAIN_MODEL, "text", 2)):
        for version in range(1, versions + 1):
            if not (models_dir / name / str(version)).exists():
                write_fake_model(models_dir, name, version, modality)
        ctx.models[name] = versions


def ensure_galleries(ctx: Context) -> None:
    with ctx.client() as client:
        for name, model, modality in (("docs", TEXT_MODEL, "text"), ("bulk", TEXT_MODEL, "text"),
                                      ("pics", IMAGE_MODEL, "image")):
            if name in ctx.ledger.galleries and ctx.ledger.galleries[name].exists:
                continue
            reply = _expect(client.post("/galleries", json={"name": name, "model": model, "index": "Flat"}), 201)
            ctx.ledger.gallery_created(name, model, modality, reply.json()["model_version"])
        models = {m["name"]: m["active_version"] for m in _expect(client.get("/models"), 200).json()["models"]}
        for name, version in models.items():
            if name not in ctx.ledger.models:
                ctx.ledger.model_active(name, version)


def settle_jobs(ctx: Context, client: httpx.Client, final: bool) -> None:
    """Acknowledge the items each tracked job reports done (a job counts a chunk only once it is stored)."""
    still = []
    for job_id, gallery, keys, states in ctx.jobs:
        reply = client.get(f"/jobs/{job_id}")
        if reply.status_code == 404 and final:
            ctx.notes.append(f"job {job_id} unknown after the restart")
            continue
        record = _expect(reply, 200).json()
        done = record["done"]
        ctx.ledger.write(gallery, {key: states[key] for key in keys[:done]}, acked=True)
        if record["state"] in ("queued", "running") and not final:
            still.append((job_id, gallery, keys, states))
        elif record["state"] == "failed":
            ctx.notes.append(f"job {job_id} failed: {record['error']}")
    ctx.jobs = still


def wait_jobs(ctx: Context, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with ctx.client() as client:
        while ctx.jobs and time.monotonic() < deadline:
            settle_jobs(ctx, client, final=False)
            time.sleep(0.05)


# ----- the stages: each `act` works until the server is gone or its time is up -----

def _text_items(prefix: str, n: int, run: int) -> List[dict]:
    return [{"key": f"{prefix}{i}", "text": f"{prefix} text {i} run {run}", "label": f"l{i % 5}",
             "payload": {"i": i, "run": run}} for i in range(n)]


def _states(items: List[dict]) -> Dict[str, Optional[ItemState]]:
    return {item["key"]: ItemState.of(item["text"], item.get("label"), item.get("payload")) for item in items}


def _start_job(ctx: Context, client: httpx.Client, gallery: str, keys: List[str],
               states: Dict[str, Optional[ItemState]], send: Callable[[], httpx.Response]) -> None:
    ctx.ledger.write(gallery, states, acked=False)
    reply = _expect(send(), 202)
    ctx.jobs.append((reply.json()["job_id"], gallery, keys, states))
    ctx.phase = "job running"


def _follow_jobs(ctx: Context, client: httpx.Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        settle_jobs(ctx, client, final=False)
        if not ctx.jobs:
            ctx.phase = "job done"
        time.sleep(0.03)


def act_bulk_json(ctx: Context, client: httpx.Client, deadline: float) -> None:
    items = _text_items(f"bulk{ctx.run}-", 160, ctx.run)
    keys = [item["key"] for item in items]
    _start_job(ctx, client, "bulk", keys, _states(items),
               lambda: client.post("/galleries/bulk/items", json={"items": items}))
    _follow_jobs(ctx, client, deadline)


def _image_set(ctx: Context, prefix: str, n: int) -> Dict[str, bytes]:
    base = ctx.rng.randrange(1 << 30)
    return {f"{prefix}{i:03d}": png_bytes(base + i) for i in range(n)}


def act_bulk_images(ctx: Context, client: httpx.Client, deadline: float) -> None:
    images = _image_set(ctx, f"img{ctx.run}-", 40)
    metas = [{"key": key, "label": i % 3, "payload": {"n": i}} for i, key in enumerate(images)]
    states = {meta["key"]: ItemState.of(None, meta["label"], meta["payload"], images[meta["key"]]) for meta in metas}
    import json

    files = [("files", (f"{key}.png", data, "image/png")) for key, data in images.items()]
    _start_job(ctx, client, "pics", list(images), states,
               lambda: client.post("/galleries/pics/items", files=files, data={"items": json.dumps(metas)}))
    _follow_jobs(ctx, client, deadline)


def act_archive(ctx: Context, client: httpx.Client, deadline: float) -> None:
    folder = f"arc{ctx.run}"
    images = _image_set(ctx, f"{folder}/m", 40)
    states = {key: ItemState.of(None, folder, {}, data) for key, data in images.items()}
    archive = tar_of({f"{key}.png": data for key, data in images.items()})
    _start_job(ctx, client, "pics", list(images), states,
               lambda: client.post("/galleries/pics/items/archive", files={"archive": ("a.tar", archive)},
                                   data={"labels": "folder"}))
    _follow_jobs(ctx, client, deadline)


def _present_keys(ctx: Context, gallery: str) -> List[str]:
    record = ctx.ledger.gallery(gallery)
    return sorted(key for key, state in record.acked.items() if state is not None and key not in record.pending)


def act_adds(ctx: Context, client: httpx.Client, deadline: float) -> None:
    serial = 0
    while time.monotonic() < deadline:
        existing = _present_keys(ctx, "docs")
        items = []
        for _ in range(ctx.rng.randint(1, 3)):
            serial += 1
            if existing and ctx.rng.random() < 0.3:  # an upsert of an acknowledged item
                key = ctx.rng.choice(existing)
            else:
                key = f"add{ctx.run}-{serial}"
            if key not in {item["key"] for item in items}:
                items.append({"key": key, "text": f"{key} version {ctx.run}.{serial}", "label": serial % 4,
                              "payload": {"serial": serial}})
        states = _states(items)
        ctx.ledger.write("docs", states, acked=False)
        _expect(client.post("/galleries/docs/items", json={"items": items}), 200)
        ctx.ledger.write("docs", states, acked=True)
        ctx.phase = "adding"


def act_image_upserts(ctx: Context, client: httpx.Client, deadline: float) -> None:
    """Sync image writes, most of them replacing an acknowledged image item with new pixels."""
    import json

    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        existing = [key for key in _present_keys(ctx, "pics") if key.startswith("up")]
        key = ctx.rng.choice(existing) if existing and ctx.rng.random() < 0.7 else f"up{ctx.run}-{serial}"
        data = png_bytes(ctx.rng.randrange(1 << 30))
        meta = [{"key": key, "label": serial % 3, "payload": {"serial": serial}}]
        states = {key: ItemState.of(None, meta[0]["label"], meta[0]["payload"], data)}
        ctx.ledger.write("pics", states, acked=False)
        _expect(client.post("/galleries/pics/items", files=[("files", (f"{key}.png", data, "image/png"))],
                            data={"items": json.dumps(meta)}), 200)
        ctx.ledger.write("pics", states, acked=True)
        ctx.phase = "upserting images"


def setup_deletes(ctx: Context, client: httpx.Client) -> None:
    existing = _present_keys(ctx, "docs")
    if len(existing) < 40:
        items = _text_items(f"del{ctx.run}-", 40, ctx.run)
        for start in range(0, len(items), 8):
            part = items[start:start + 8]
            _expect(client.post("/galleries/docs/items", json={"items": part}), 200)
            ctx.ledger.write("docs", _states(part), acked=True)


def act_deletes(ctx: Context, client: httpx.Client, deadline: float) -> None:
    keys = _present_keys(ctx, "docs")
    ctx.rng.shuffle(keys)
    for key in keys[:40]:
        if time.monotonic() >= deadline:
            return
        ctx.ledger.write("docs", {key: ABSENT}, acked=False)
        reply = client.delete(f"/galleries/docs/items/{key}")
        if reply.status_code == 404:
            ctx.notes.append(f"acknowledged item {key!r} was already gone when deleted")
        else:
            _expect(reply, 200)
        ctx.ledger.write("docs", {key: ABSENT}, acked=True)
        ctx.phase = "deleting"


def _models(client: httpx.Client) -> Dict[str, dict]:
    return {m["name"]: m for m in _expect(client.get("/models"), 200).json()["models"]}


def setup_reembed(ctx: Context, client: httpx.Client) -> None:
    version = ctx.models[TEXT_MODEL] + 1
    write_fake_model(ctx.server.models_dir, TEXT_MODEL, version)
    ctx.models[TEXT_MODEL] = version


def act_reembed(ctx: Context, client: httpx.Client, deadline: float) -> None:
    version = ctx.models[TEXT_MODEL]
    ctx.phase = "before the swap"
    ctx.ledger.model_requested(TEXT_MODEL, version)
    _expect(client.post(f"/models/{TEXT_MODEL}/activate", json={"version": version}), 202, 200)
    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        item = {"key": f"during{ctx.run}-{serial}", "text": f"written during re-embedding {ctx.run}.{serial}"}
        states = _states([item])
        ctx.ledger.write("docs", states, acked=False)
        _expect(client.post("/galleries/docs/items", json={"items": [item]}), 200)
        ctx.ledger.write("docs", states, acked=True)
        model = _models(client)[TEXT_MODEL]
        if model["active_version"] == version and model["activating_version"] is None:
            ctx.ledger.model_active(TEXT_MODEL, version)
            ctx.phase = "after the swap"
        elif any(v["state"] == "reembedding" for v in model["versions"]):
            ctx.phase = "during the swap"
        time.sleep(0.02)


def act_activation(ctx: Context, client: httpx.Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        current = _models(client)[PLAIN_MODEL]["active_version"]
        target = 1 if current == 2 else 2
        ctx.ledger.model_requested(PLAIN_MODEL, target)
        ctx.phase = "activating"
        _expect(client.post(f"/models/{PLAIN_MODEL}/activate", json={"version": target}), 202, 200)
        while time.monotonic() < deadline:
            model = _models(client)[PLAIN_MODEL]
            if model["active_version"] == target and model["activating_version"] is None:
                ctx.ledger.model_active(PLAIN_MODEL, target)
                ctx.phase = "activated"
                break
            time.sleep(0.01)


def act_galleries(ctx: Context, client: httpx.Client, deadline: float) -> None:
    serial = 0
    version = _models(client)[TEXT_MODEL]["active_version"]
    while time.monotonic() < deadline:
        serial += 1
        name = f"tmp{ctx.run}-{serial}"
        ctx.ledger.gallery_created(name, TEXT_MODEL, "text", version, acked=False)
        ctx.ledger.bind_versions(TEXT_MODEL, ctx.ledger.models[TEXT_MODEL].allowed())
        ctx.phase = "creating"
        reply = _expect(client.post("/galleries", json={"name": name, "model": TEXT_MODEL, "index": "exact"}), 201)
        ctx.ledger.gallery(name).exists = True
        ctx.ledger.gallery(name).versions.add(reply.json()["model_version"])
        items = _text_items(f"{name}-", 2, ctx.run)
        ctx.ledger.write(name, _states(items), acked=False)
        ctx.phase = "adding"
        _expect(client.post(f"/galleries/{name}/items", json={"items": items}), 200)
        ctx.ledger.write(name, _states(items), acked=True)
        if serial % 3 == 0:
            continue  # keep every third one
        ctx.ledger.gallery_deleted(name, acked=False)
        ctx.phase = "deleting"
        _expect(client.delete(f"/galleries/{name}"), 200)
        ctx.ledger.gallery_deleted(name, acked=True)


def act_index_save(ctx: Context, client: httpx.Client, deadline: float) -> None:
    items = _text_items(f"save{ctx.run}-", 8, ctx.run)
    ctx.ledger.write("docs", _states(items), acked=False)
    _expect(client.post("/galleries/docs/items", json={"items": items}), 200)
    ctx.ledger.write("docs", _states(items), acked=True)
    ctx.phase = "shutting down"


@dataclass
class Stage:
    name: str
    act: Callable[[Context, httpx.Client, float], None]
    window_s: tuple  # the kill moment is drawn uniformly from this range (seconds after `act` starts)
    setup: Optional[Callable[[Context, httpx.Client], None]] = None
    sigterm_first: bool = False  # SIGTERM at the start of the window, SIGKILL at the drawn moment


STAGES: Dict[str, Stage] = {stage.name: stage for stage in (
    Stage("bulk_json", act_bulk_json, (0.05, 1.2)),
    Stage("bulk_images", act_bulk_images, (0.05, 1.0)),
    Stage("archive", act_archive, (0.05, 1.0)),
    Stage("adds", act_adds, (0.05, 1.0)),
    Stage("image_upserts", act_image_upserts, (0.3, 1.5)),
    Stage("deletes", act_deletes, (0.05, 1.0), setup=setup_deletes),
    Stage("reembed", act_reembed, (0.0, 6.0), setup=setup_reembed),  # the swap takes seconds: kills land after it too
    Stage("galleries", act_galleries, (0.05, 1.0)),
    Stage("activation", act_activation, (0.0, 1.0)),
    Stage("index_save", act_index_save, (0.0, 0.4), sigterm_first=True),
)}


@dataclass
class KillResult:
    stage: str
    moment_s: float
    phase: str
    violations: List[str]
    notes: List[str]
    error: Optional[str] = None


def kill_at_random_moment(ctx: Context, stage: Stage) -> KillResult:
    """Run `stage` on the live server, SIGKILL it at a moment drawn from the stage's window, restart, check."""
    ctx.run += 1
    ctx.phase, ctx.notes = "setup", []
    ensure_galleries(ctx)
    with ctx.client() as client:
        if stage.setup is not None:
            stage.setup(ctx, client)
    moment = ctx.rng.uniform(*stage.window_s)
    error = None
    if stage.sigterm_first:
        with ctx.client() as client:
            stage.act(ctx, client, time.monotonic())
        ctx.server.terminate_then_kill(moment)
    else:
        timer = threading.Timer(moment, ctx.server.kill)
        deadline = time.monotonic() + stage.window_s[1] + 0.2
        timer.start()
        try:
            with ctx.client() as client:
                stage.act(ctx, client, deadline)
        except Gone:
            pass
        except UnexpectedReply as unexpected:
            if ctx.server.alive():
                error = str(unexpected)
        finally:
            timer.join()
            ctx.server.kill()
    ctx.server.start()
    with ctx.client() as client:
        settle_jobs(ctx, client, final=True)
    violations = check_invariants(ctx.server.url, ctx.server.data_dir, ctx.ledger)
    if error:
        violations.append(f"unexpected reply before the kill: {error}")
    return KillResult(stage.name, round(moment, 3), ctx.phase, violations, list(ctx.notes), error)


__all__ = ["Context", "Stage", "STAGES", "KillResult", "SERVER_ENV", "prepare", "ensure_galleries",
           "kill_at_random_moment", "settle_jobs", "wait_jobs", "TEXT_MODEL", "IMAGE_MODEL", "PLAIN_MODEL"]
