"""write an HTML report (figures, tables) of a run, CV or sweep folder (FOLDER [output=DIR] [examples=[...]])"""

from __future__ import annotations

import sys

from segsuite.core.errors import UserError

USAGE = ("usage: segsuite report FOLDER [output=DIR] [overwrite=true] [examples=[a.tif,b.tif]]  (a run, segsuite "
         "cv or sweep folder; examples: inputs its model predicts, drawn with a legend)")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    folder, options = argv[0], dict(a.partition("=")[::2] for a in argv[1:])
    unknown = sorted(set(options) - {"output", "overwrite", "examples"})
    if unknown or options.get("overwrite", "false").lower() not in ("true", "false"):
        bad = unknown or options["overwrite"]
        print(f"error: report takes output=DIR, overwrite=true|false and examples=[...], not {bad}", file=sys.stderr)
        return 2
    from segsuite.core.report_page import write_report

    try:
        examples = [e.strip() for e in options.get("examples", "").strip("[]").split(",") if e.strip()]
        page = write_report(folder, options.get("output"), options.get("overwrite", "false").lower() == "true",
                            examples)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
