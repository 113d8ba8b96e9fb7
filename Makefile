# The two commands a new user types: `make demo` and `make test`. Each builds .venv first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install osmesa demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: here 2.13.0 is a local CPU wheel; the range in pyproject would
	# otherwise pull a multi-gigabyte CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rlmeta train experiments/maml_navigation2d.yaml --set iterations=15 --run-dir runs/demo
	$(VENV)/bin/rlmeta evaluate runs/demo --tasks 20 --adapt-steps 3 --out runs/demo/eval

# MuJoCo and Meta-World videos render headless through OSMesa (MUJOCO_GL=osmesa), an OS library
# that the video tests need: installed from Debian when missing (root, or sudo).
osmesa:
	@ldconfig -p | grep -q libOSMesa || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing libosmesa6 (headless MuJoCo frames)"; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6; }

test: $(STAMP) osmesa
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q --durations=10

# The figures quoted in README.md and benchmarks/results/*.md, with the budgets they were
# measured at. Several hours on 2 cores (the RL² table rows alone about 11); each script takes a
# smaller budget too (see its --help).
bench: $(STAMP)
	$(PY) -m benchmarks.sampler --steps 200000 --repeats 5
	# The same on Meta-World ML10 beside a bare loop over its envs (sampler_metaworld.md).
	$(PY) -m benchmarks.sampler_metaworld --steps 100000 --repeats 3
	# The learner: one update per TRPO metric, per learner count (learners 1 and 2, and end to end
	# with 2 workers), and the scaling model checked on a simulated 3-node cluster
	# (benchmarks/results/learner.md, docs/cluster.md). About 1 h.
	$(PY) -m benchmarks.learner --repeats 3
	$(PY) -m benchmarks.learner_group --repeats 5 --end-to-end 6
	$(PY) -m benchmarks.scaling --iterations 6
	$(PY) -m benchmarks.maml_tables --envs navigation2d --iterations 100 --eval-tasks 40 --workers 2
	$(PY) -m benchmarks.maml_tables --envs halfcheetah_vel --iterations 15 --eval-tasks 20 --workers 2
	$(PY) -m benchmarks.maml_tables --envs halfcheetah_dir --iterations 12 --eval-tasks 20 --workers 2
	# The RL² table's rows: each an `rlmeta train` run of its experiment file (a staged row, one
	# file per stage, each starting from the stage before: init_from), measured into the table.
	rm -rf $(addprefix runs/rl2_tables/,bandit-10-5 bandit-10-10 bandit-10-50 bandit-100-5 \
		bandit-100-10 bandit-100-50 mdp-10_stage1 mdp-10 mdp-25_stage1 mdp-25_stage2 mdp-25)
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k5_n10.yaml --run-dir runs/rl2_tables/bandit-10-5
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-10-5 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k10_n10.yaml --run-dir runs/rl2_tables/bandit-10-10
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-10-10 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k50_n10.yaml --run-dir runs/rl2_tables/bandit-10-50
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-10-50 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k5_n100.yaml --run-dir runs/rl2_tables/bandit-100-5
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-100-5 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k10_n100.yaml --run-dir runs/rl2_tables/bandit-100-10
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-100-10 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_bandit_k50_n100.yaml --run-dir runs/rl2_tables/bandit-100-50
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/bandit-100-50 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_tabular_mdp_n10_stage1.yaml --run-dir runs/rl2_tables/mdp-10_stage1
	$(VENV)/bin/rlmeta train experiments/rl2_tabular_mdp_n10.yaml --run-dir runs/rl2_tables/mdp-10
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/mdp-10 --merge
	$(VENV)/bin/rlmeta train experiments/rl2_tabular_mdp_n25_stage1.yaml --run-dir runs/rl2_tables/mdp-25_stage1
	$(VENV)/bin/rlmeta train experiments/rl2_tabular_mdp_n25_stage2.yaml --run-dir runs/rl2_tables/mdp-25_stage2
	$(VENV)/bin/rlmeta train experiments/rl2_tabular_mdp_n25.yaml --run-dir runs/rl2_tables/mdp-25
	$(PY) -m benchmarks.rl2_tables --evaluate runs/rl2_tables/mdp-25 --merge
	# RL² beside MAML on the same tasks (benchmarks/results/rl2_locomotion_navigation.md).
	rm -rf runs/bench/rl2_nav runs/bench/rl2_cheetah
	$(VENV)/bin/rlmeta train experiments/rl2_navigation2d.yaml --set workers=0 --run-dir runs/bench/rl2_nav
	$(VENV)/bin/rlmeta evaluate runs/bench/rl2_nav --tasks 40 --workers 0 --out runs/bench/rl2_nav/eval
	cp runs/bench/rl2_nav/eval/adaptation.csv benchmarks/results/rl2_navigation2d_adaptation.csv
	$(VENV)/bin/rlmeta train experiments/rl2_halfcheetah_vel.yaml --set workers=0 --run-dir runs/bench/rl2_cheetah
	$(VENV)/bin/rlmeta evaluate runs/bench/rl2_cheetah --tasks 40 --workers 0 --out runs/bench/rl2_cheetah/eval
	cp runs/bench/rl2_cheetah/eval/adaptation.csv benchmarks/results/rl2_halfcheetah_vel_adaptation.csv
	$(PY) -m benchmarks.velocity_tracking runs/bench/rl2_cheetah --tasks 100 --out benchmarks/results/rl2_halfcheetah_vel_tracking.json
	# MAML-TRPO on the same held-out tasks, measured the same way: at 25 iterations (RL²'s 8M env
	# steps) and at 225 (72M; the config's 500 take about 3.6 h on 2 cores). About 2 h on 2 cores.
	rm -rf runs/bench/maml_cheetah
	$(VENV)/bin/rlmeta train experiments/maml_halfcheetah_vel.yaml --set iterations=225 --set checkpoint_every=25 --set keep_checkpoints=20 --set learner_cpus=2 --set maml.fisher=exact --run-dir runs/bench/maml_cheetah
	$(PY) -m benchmarks.velocity_tracking runs/bench/maml_cheetah/checkpoints/ckpt_000025.pt --tasks 100 --out benchmarks/results/maml_halfcheetah_vel_tracking_8m.json
	$(PY) -m benchmarks.velocity_tracking runs/bench/maml_cheetah --tasks 100 --out benchmarks/results/maml_halfcheetah_vel_tracking.json
	$(VENV)/bin/rlmeta evaluate runs/bench/maml_cheetah --tasks 40 --workers 0 --out runs/bench/maml_cheetah/eval
	cp runs/bench/maml_cheetah/eval/adaptation.csv benchmarks/results/maml_halfcheetah_vel_adaptation.csv

	# A 3 x 3 sweep on Ray Tune at a 10-minute budget (benchmarks/results/sweep_maml_navigation2d.md).
	rm -rf runs/bench/sweep_nav
	$(VENV)/bin/rlmeta sweep experiments/sweeps/maml_navigation2d_inner_lr_max_kl.yaml --set iterations=4 --set maml.meta_batch_size=10 --out runs/bench/sweep_nav
	cp runs/bench/sweep_nav/results.csv benchmarks/results/sweep_maml_navigation2d.csv

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
