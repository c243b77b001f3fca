"""Size and write time of `edgetl report`'s page for a run, measured in one run.

Writes RUN/report/index.html REPEATS times in this process and once through the CLI in a fresh process, then
prints the page's size, its distinct thumbnails, the median write time (reading the run, decoding thumbnails,
writing) and the CLI's wall time (Python start-up and imports included).

    python benchmarks/report_page.py [RUN]     (RUN defaults to demo-out/run: `make demo` makes it)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 5


def main() -> None:
    import edgetl

    run = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out/run")
    pages = [edgetl.report(run) for _ in range(REPEATS)]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgetl", "report", str(run)], check=True, capture_output=True)
    cli_seconds = time.perf_counter() - started
    page = pages[-1]
    print(f"run:                {run}")
    print(f"page:               {page.path}")
    print(f"size:               {page.size_bytes / 1024:.0f} KiB ({page.size_bytes} bytes)")
    print(f"thumbnails:         {page.thumbnails} distinct images inlined")
    print(f"sections:           {', '.join(page.sections)}")
    print(f"write time:         median {statistics.median(p.seconds for p in pages):.3f} s over {REPEATS} writes "
          f"(first {pages[0].seconds:.3f} s)")  # fmt: skip
    print(f"`edgetl report`:    {cli_seconds:.2f} s wall in a fresh process")


if __name__ == "__main__":
    main()
