"""`oml finetune --server URL --model M --gallery G [...]`: start a fine-tune on a running server and follow it.

Exit statuses: 0 the job ended `done` (the candidate promoted or kept: the last line says which and why); 1 it ended
failed, interrupted or cancelled, or the server could not be reached; 2 the server refused the request (the message
names the problem). Ctrl+C cancels the job (`DELETE /jobs/{id}`) and exits 130.
"""

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 130
TERMINAL = ("done", "failed", "interrupted", "cancelled")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `finetune` subcommand."""
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a served model on a gallery's labels; activate it only if it beats the active one",
        description="POST /models/{model}/finetune on a running oml server, then follow the job until it ends. The "
        "candidate is evaluated against the active version on held-out labels (CMC@1, mAP@5) and activated only when "
        "it is better (--promote if_better).")
    parser.add_argument("--server", default=os.environ.get("OML_SERVER", "http://127.0.0.1:8000"),
                        help="server URL (default $OML_SERVER or http://127.0.0.1:8000)")
    parser.add_argument("--model", required=True, help="model name to fine-tune")
    parser.add_argument("--gallery", required=True, help="a gallery of that model whose items carry labels")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override, e.g. --set max_epochs=2 --set optimizer.args.lr=1e-5 "
                        "(values read as YAML); repeatable")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of labels held out (default 0.2)")
    parser.add_argument("--promote", choices=("if_better", "never", "always"), default="if_better")
    parser.add_argument("--min-improvement", type=float, default=None,
                        help="CMC@1 gain the candidate needs with if_better (server default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label split")
    parser.add_argument("--api-key", default=os.environ.get("OML_API_KEY"), help="API key (default $OML_API_KEY)")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and exit")
    parser.add_argument("--poll-s", type=float, default=2.0, help="seconds between job polls")
    parser.set_defaults(func=run_finetune)


def request_body(args: argparse.Namespace) -> Dict[str, Any]:
    """The JSON body of the request from the command line (`--set` values parsed as YAML)."""
    from training.config import parse_overrides

    config = {".".join(parts): value for parts, value in parse_overrides(args.overrides)}
    body: Dict[str, Any] = {"gallery": args.gallery, "config": config, "holdout": args.holdout,
                            "promote": args.promote, "seed": args.seed}
    if args.min_improvement is not None:
        body["min_improvement"] = args.min_improvement
    return body


def progress_line(job: Dict[str, Any]) -> str:
    """One line about a job: state, phase, steps and the validation metric so far."""
    parts: List[str] = [job["state"]]
    if job.get("phase"):
        parts.append(job["phase"])
    progress = (job.get("result") or {}).get("progress") or {}
    if progress.get("steps"):
        parts.append(f"epoch {progress.get('epoch')} step {progress.get('step')}/{progress.get('steps')}")
    metric = progress.get("metric")
    if metric:
        parts.append(f"{metric['name']} {metric['value']}")
    return " | ".join(parts)


def run_finetune(args: argparse.Namespace) -> int:
    """Start the job, follow it, print the outcome; see the module docstring for the exit statuses."""
    import httpx

    from training.config import ConfigError

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        body = request_body(args)
    except ConfigError as error:
        print(f"oml finetune: {error}", file=sys.stderr)
        return EXIT_REFUSED
    with httpx.Client(base_url=args.server.rstrip("/"), headers=headers, timeout=60) as client:
        try:
            reply = client.post(f"/models/{args.model}/finetune", json=body)
        except httpx.HTTPError as error:
            print(f"oml finetune: cannot reach {args.server}: {error}", file=sys.stderr)
            return EXIT_FAILED
        if reply.status_code != 202:
            print(f"oml finetune: refused ({reply.status_code}): {_detail(reply)}", file=sys.stderr)
            return EXIT_REFUSED
        job_id = reply.json()["job_id"]
        print(f"oml finetune: job {job_id} ({args.model} on gallery {args.gallery})", flush=True)
        if args.no_wait:
            return 0
        try:
            job = follow(client, job_id, args.poll_s)
        except KeyboardInterrupt:
            client.delete(f"/jobs/{job_id}")
            print(f"\noml finetune: cancelled job {job_id}", file=sys.stderr)
            return EXIT_INTERRUPTED
    return report(job)


def follow(client: Any, job_id: str, poll_s: float) -> Dict[str, Any]:
    """Poll the job, printing a line whenever it changes, until it ends; its last record."""
    last: Optional[str] = None
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        line = progress_line(job)
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if job["state"] in TERMINAL:
            return job
        time.sleep(poll_s)


def report(job: Dict[str, Any]) -> int:
    """Print the outcome of an ended job; its exit status."""
    result = job.get("result") or {}
    if job["state"] != "done":
        print(f"oml finetune: job {job['state']}: {job.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    evaluation = result.get("evaluation", {})
    for name in ("active", "candidate"):
        metrics = evaluation.get(name, {})
        print(f"  {name:<10} CMC@1 {metrics.get('OVERALL/cmc/1', float('nan')):.4f}  "
              f"mAP@5 {metrics.get('OVERALL/map/5', float('nan')):.4f}")
    verdict = "activated" if result.get("activated") else "kept available (not activated)"
    print(f"oml finetune: {result.get('model')} v{result.get('candidate_version')} {verdict}: {result.get('reason')}")
    return 0


def _detail(reply: Any) -> str:
    try:
        return str(reply.json().get("detail"))
    except ValueError:
        return reply.text[:500]


__all__ = ["register", "run_finetune", "request_body", "progress_line"]
