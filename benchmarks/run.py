"""Run the benchmarks: every number in docs/performance.md comes from here.

    python benchmarks/run.py                  # everything (about an hour on 2 CPU cores)
    python benchmarks/run.py --quick          # the CI smoke test: small models, few repeats
    python benchmarks/run.py --only line economy study hvp startup
    python benchmarks/run.py --threads 2 --clock wall

Each benchmark is also a script of its own (benchmarks/<file>.py, same options). They
measure the compared things side by side in one process, interleaved and repeated, and print
ratios (medians and interquartile ranges over rounds); see benchmarks/common.py. Nothing here
asserts a time: the quick mode checks that every benchmark still runs. One runs on its own,
under torchrun: benchmarks/fsdp_cost.py (the walk on a model sharded by FSDP2).
"""

from __future__ import annotations

import time

import economy_cost
import gpu_cost
import hvp_cost
import lanczos_starts
import line_floor
import original_baseline
import preset_cost
import scaling
import sharpness_solvers
import startup
import study_cost
import transformer_cost
from common import parser, start

BENCHMARKS = {
    "presets": preset_cost,  # 1. each preset / a plain SGD step, per model
    "line": line_floor,  # 2. the line probe / K plain forwards
    "economy": economy_cost,  # 3. economy mode's cost, floor and error
    "original": original_baseline,  # 4. against saving every step + offline interpolation
    "sharpness": sharpness_solvers,  # 5. warm Lanczos vs power iteration
    "scaling": scaling,  # 6. memory and bytes vs run length; cost vs K, model, probe set
    "study": study_cost,  # 7. cheap / economy / line per study model, and their floors
    "transformer": transformer_cost,  # 8. economy, line and memory on a GPT with AdamW
    "hvp": hvp_cost,  # 9. one Hessian-vector product in a solve against PyHessian's
    "starts": lanczos_starts,  # 5b. Lanczos products by start vector, and the rate bound
    "startup": startup,  # 10. time to the first progress line of `sgdwalk train default`
    "gpu": gpu_cost,  # 11. the presets on a CUDA device (says so and skips without one)
}


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these only")
    args = p.parse_args(argv)
    opts = start(args)
    print(f"mode: {'quick' if opts.quick else 'full'}")
    for name in args.only or BENCHMARKS:
        began = time.perf_counter()
        BENCHMARKS[name].run(opts)
        print(f"\n[{name}: {time.perf_counter() - began:.0f} s]")


if __name__ == "__main__":
    main()
