"""Tuning a cascade on labelled dev data: what `beam-cascade calibrate` measures and chooses.

`recipe.py` `tune` is the recipe; each step lives in its own module:

0. With --compare_runtimes, each transformer tier first gets its runtime and precision chosen
   (`runtime_choice.py`).
1. Runs every tier once over the dev texts (`measurement.py`; logits cached on this machine,
   `logits_cache.py`); a tier with a `length_budget` first gets its token-dropping
   length configuration searched.
2. Fits one temperature per tier (NLL, `fitting.py`); a multi-exit tier also gets one
   temperature per exit and the table of its early-exit knob; its `exit_threshold`, if set,
   is kept and the tier is measured exiting early. A tier with `confidence: learned` gets its
   router fitted on half of the unlabelled sample (`routers.py`); the other half is the
   sample every later step measures on, so the guarantee's disagreement rate is counted on
   records the router never saw.
3. Measures each tier's seconds per record at each batch size on this machine (kept for
   the next run, `cost_cache.py`). Steps 0-3 run once (`recipe.py` `measure_cascade`), the
   rest once per policy (`choose_for_policy`: calibrate's several budgets).
4. Replays the cascade at every threshold vector on the dev data (the frontier) and picks
   the operating point the policy asks for (`choice.py`): for an accuracy-drop budget, the
   cheapest threshold whose upper confidence bound on the drop passes (models/guarantee.py),
   the disagreement rate measured on an unlabelled sample when one is given. Every tier after
   the first is then refitted on the dev records that reach it there, and the point chosen
   again, until it stays (`choose_with_reached_calibration`).
5. Re-measures the later tiers on the records that reach them at that point (they see the
   harder, often longer, texts, and fewer of them) and picks their batch size for that.
6. Returns the tuned config and everything measured (`results.py` `TuningResult`), with a
   split-half check that the chosen thresholds carry over to unseen data.

No Beam and no files but this machine's logits and costs: pipeline/calibrate.py reads the inputs and
writes the config, pipeline/calibration_report.py the report.
"""
