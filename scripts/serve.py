"""Entry point: `segsuite serve [--models DIR] [--host 127.0.0.1] [--port 7860]`, the demo page
(core/serve.py) over every checkpoint found under DIR."""

import argparse
import sys

from segsuite.core.errors import UserError
from segsuite.core.serve import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="segsuite demo page: upload an input, see and download the result")
    parser.add_argument("--models", default="outputs", help="folder searched recursively for *.ckpt (default: outputs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--cache", default=None, help="folder for the built-in examples (default: ~/.cache/segsuite)")
    args = parser.parse_args(argv)
    try:
        serve(args.models, args.host, args.port, args.cache)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
