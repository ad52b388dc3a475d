"""What the line probe's floor and noise columns say beyond their values.

- eps: runs whose line probe recorded `line_population` (the examples the training loss
  averages over) have eps with the finite-population correction (0 sampling noise when
  the probe set is the whole training split); older runs keep the old eps, and claims
  that compare with it say so in their notes (docs/claims.md, rule 1).
"""

from __future__ import annotations

from sgdwalk.analysis.frames import Tables, has_data

POPULATION = "line_population"  # header value of the line probe (step -1)


def uncorrected_eps_note(t: Tables, run_ids) -> list[str]:
    """["eps without the finite-population correction in runs a, b (...)"] for the runs
    of `run_ids` that recorded no line_population; [] when every run did."""
    old = [r for r in run_ids if not has_data(t.steps, POPULATION, [r])]
    if not old:
        return []
    return [f"eps without the finite-population correction in runs {', '.join(old)} "
            "(recorded before line_population: a sample's eps even where the probe set "
            "is the whole training split)"]
