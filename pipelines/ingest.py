"""DVC stage `ingest`: map the raw sources into validated canonical tables (params: ingest)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mapwise.errors import MapwiseError
from mapwise.ingest import ingest
from mapwise.mapping.spec import load_mapping
from mapwise.params import load_params
from mapwise.privacy import load_key
from mapwise.report import print_ingest_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        p = load_params(args.params).ingest
        mappings = [load_mapping(p.mappings_dir / f"{name}.yaml") for name in p.sources]
        result = ingest(p.raw_dir, mappings, load_key(p.key_file))
    except MapwiseError as err:
        print(f"ingest: {err}", file=sys.stderr)
        return 1
    for folder, frames in ((p.canonical_dir, result.tables), (p.quarantine_dir, result.quarantine)):
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            frame.write_parquet(folder / f"{name}.parquet")
    p.report.parent.mkdir(parents=True, exist_ok=True)
    p.report.write_text(json.dumps(result.report, indent=2) + "\n")
    print_ingest_report(result.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
