"""``make bench`` / ``make bench-quick``: every part in its own process, then every figure, once.

    python -m scripts.bench [--quick] [--only checkout|kiosks30|panel ...] [--doc | --no-doc]

Prints each ratio on its own line (``ratio <name>: <value> (target <target>)``) and each absolute
figure as ``figure <name>: …``; keeps everything in var/bench/results.json (quick: results-quick.json)
and, for a full run, writes the figures section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from scripts.bench.common import PY, ROOT, machine, say, write_json
from scripts.bench.memory import product_pss_mib
from scripts.bench.report import checkout_lines, kiosks30_lines, panel_lines, stamp, write_doc, write_readme

PARTS = ("checkout", "kiosks30", "panel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller N: a smoke check of a few minutes")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    doc = parser.add_mutually_exclusive_group()
    doc.add_argument("--doc", dest="doc", action="store_true", default=None, help="write docs/BENCHMARKS.md")
    doc.add_argument("--no-doc", dest="doc", action="store_false")
    args = parser.parse_args(argv)
    write = (not args.quick and set(args.only) == set(PARTS)) if args.doc is None else args.doc
    suffix = "-quick" if args.quick else ""
    out_dir = ROOT / "var" / "bench"
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    failed = []
    for part in args.only:
        out = out_dir / f"{part}{suffix}.json"
        out.unlink(missing_ok=True)
        say(f"=== bench {part}{' (quick)' if args.quick else ''} ===")
        t0 = time.monotonic()
        cmd = [PY, "-m", f"scripts.bench.{part}", "--out", str(out), *(["--quick"] if args.quick else [])]
        # The part prints its own lines too; here they are printed once, all together, at the end.
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)  # noqa: S603
        say(f"=== bench {part}: {time.monotonic() - t0:.0f} s, exit {done.returncode} ===")
        if done.returncode != 0 or not out.exists():
            failed.append(part)
            continue
        results[part] = json.loads(out.read_text())
    checkout = results.get("checkout", {})
    pss_10 = product_pss_mib(checkout["memory"]) if checkout.get("memory") else None
    results["lines"] = (checkout_lines(checkout) + kiosks30_lines(results.get("kiosks30", {}), pss_10)
                        + panel_lines(results.get("panel", {})))
    results["finished"] = stamp()
    results["duration_s"] = time.monotonic() - started
    write_json(out_dir / f"results{suffix}.json", results)
    if write and not failed:
        write_doc(results)
        write_readme(results)
        say("docs/BENCHMARKS.md and README.md: figures written")
    for line in results["lines"]:
        print(line, flush=True)
    print(f"bench: {results['duration_s']:.0f} s in all{'; FAILED: ' + ', '.join(failed) if failed else ''}",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
