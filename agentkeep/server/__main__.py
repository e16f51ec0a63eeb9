"""``python -m agentkeep.server [--host H] [--port P] [--workers N] [--database-url URL]``."""

from __future__ import annotations

import argparse

from agentkeep.server.serving import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentkeep.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port, workers=args.workers, database_url=args.database_url)


if __name__ == "__main__":
    main()
