"""Entry points that measure what rlmeta's own training loop and runtime produce.

Each trains through `rlmeta train` (or `rlmeta.run.train`) and measures with `rlmeta.run.evaluation`
or its own evaluation; none has a training or sampling loop of its own. Results go to
`benchmarks/results/`; each module's docstring gives its command:

- `python -m benchmarks.rl2_tables`: the RL² paper's tables, a row per `rlmeta train` run.
- `python -m benchmarks.rl2_tables_markdown`: their markdown, rendered from their JSON.
- `python -m benchmarks.rl2_reproduction`: whether a re-run of a row retraced the table's row.
- `python -m benchmarks.maml_tables`: MAML's tables (Finn et al. 2017).
- `python -m benchmarks.velocity_tracking`: how closely a run's policy tracks its goal velocity.
- `python -m benchmarks.sampler`: sampler throughput and where a training iteration's time goes.
"""
