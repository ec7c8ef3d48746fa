"""Serve the published indexes, or query them once from the command line with the pins' text.

In: each space's ``CURRENT`` version of the index store (``EMB_INDEX_URI``), and the lake's
``pinnerformer_user_embeddings``, ``user_sequences``, ``user_medoids`` (at the ds of the paired index) and
``pins`` (text, for the printed results). Out: an HTTP service on 127.0.0.1 (``http``), or results printed
for a person to eyeball (``related``, ``user``, ``pinnersage``).

    python -m jobs.serve http --port 8765 --reload-interval-s 10
    python -m jobs.serve related --pin-id 3000000042
    python -m jobs.serve user --user-id 1000000007 --k 20
    python -m jobs.serve pinnersage --user-id 1000000007
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from embeddings.data.schemas import PINS
from embeddings.lake import Lake
from embeddings.retrieval.http import make_server
from embeddings.retrieval.service import RetrievalError, Retriever
from embeddings.settings import Settings

log = logging.getLogger("jobs.serve")


def pin_texts(lake: Lake, pin_ids: Sequence[int]) -> dict[int, str]:
    """The ``pins`` snapshot's text of the given pins (missing ones are left out)."""
    table = lake.read(PINS, None, columns=["pin_id", "text"])
    table = table.filter(pc.is_in(table["pin_id"], pa.array(list(pin_ids), pa.int64())))
    return dict(zip(table["pin_id"].to_pylist(), table["text"].to_pylist()))


def format_response(response: dict, texts: dict[int, str]) -> str:
    """A readable block: the query, the versions, a fallback if any, one line per result with its text."""
    query = ", ".join(f"{k}={v}" for k, v in response["query"].items())
    lines = [f"{response['kind']} ({query}) from {response['index_version']} [{response['model_version']}]"]
    if "pin_id" in response["query"]:
        lines.append(f"  query pin: {texts.get(response['query']['pin_id'], '?')}")
    for medoid in response.get("medoids", []):
        lines.append(f"  medoid {medoid['pin_id']} (importance {medoid['importance']:.2f}): "
                     f"{texts.get(medoid['pin_id'], '?')}")
    if response["fallback"]:
        lines.append(f"  FALLBACK {response['fallback']}: {response['fallback_reason']}")
    for rank, r in enumerate(response["results"], 1):
        score = "   -  " if r["score"] is None else f"{r['score']:.3f}"
        lines.append(f"  {rank:>3}. {r['pin_id']}  {score}  {texts.get(r['pin_id'], '?')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--index-uri", default=settings.index_uri)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    sub = parser.add_subparsers(dest="command", required=True)
    parser.add_argument("--pinnersage-pull", type=float, default=0.0,
                        help="pull of each medoid query toward the index's corpus direction (0: the medoids as "
                        "they are); the nightly evaluation's choice is its MLflow tag eval.pull_chosen_on_valid")
    http = sub.add_parser("http", help="serve the JSON API on 127.0.0.1")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=8765)
    http.add_argument("--reload-interval-s", type=float, default=10.0)
    for name, key in (("related", "--pin-id"), ("user", "--user-id"), ("pinnersage", "--user-id")):
        one = sub.add_parser(name, help=f"print one {name} query's results with the pins' text")
        one.add_argument(key, type=int, required=True)
        one.add_argument("--k", type=int, default=10)
        one.add_argument("--json", action="store_true", help="print the raw response")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    retriever = Retriever(args.index_uri, args.lake_uri, pinnersage_pull=args.pinnersage_pull)
    retriever.reload()
    if args.command == "http":
        retriever.snapshot  # noqa: B018 (fail now, loudly, when nothing could be loaded)
        retriever.watch(args.reload_interval_s)
        server = make_server(retriever, args.host, args.port)
        log.info("serving %s on http://%s:%d", retriever.snapshot.versions, *server.server_address[:2])
        try:
            server.serve_forever()
        finally:
            retriever.stop()
        return
    try:
        if args.command == "related":
            response = retriever.related_pins(args.pin_id, args.k)
        elif args.command == "user":
            response = retriever.user_pins(args.user_id, args.k)
        else:
            response = retriever.pinnersage(args.user_id, args.k)
    except RetrievalError as exc:
        raise SystemExit(f"{type(exc).__name__}: {exc}") from None
    if args.json:
        print(json.dumps(response, indent=2))
        return
    ids = [r["pin_id"] for r in response["results"]] + [m["pin_id"] for m in response.get("medoids", [])]
    ids += [response["query"]["pin_id"]] if "pin_id" in response["query"] else []
    print(format_response(response, pin_texts(Lake(args.lake_uri), ids)))


if __name__ == "__main__":
    main()
