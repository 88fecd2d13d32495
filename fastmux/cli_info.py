"""``fastmux info``: what this installation is running on."""
from __future__ import annotations

import argparse
import json
import resource

from . import info as _info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    # Load the twins so that info() can say which of each was chosen.
    import fastmux.reactor  # noqa: F401

    try:
        import fastmux.http  # noqa: F401
    except ImportError:  # the fallback's parser (httptools) is missing: info says "-"
        pass
    data = _info()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    data["fd_limit"] = {"soft": soft, "hard": hard}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"fastmux {data['version']}")
    print(f"core:      {data['implementation']} ({'compiled' if data['compiled'] else 'pure-Python fallback'})")
    print(f"twins:     {', '.join(f'{k} {v}' for k, v in data['twins'].items())}")
    print(f"path:      {data['path']}")
    print(f"backends:  {', '.join(data['backends'])} (default: {data['default_backend']})")
    print(f"fd limit:  soft {soft}, hard {hard}")
    return 0
