# Every target creates .venv with pip if it is missing. torch is installed with pip only
# (uv/poetry would download CUDA builds; pip takes the local wheels where they exist).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo examples bench schema docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[torch,data,plot,test,demo,retrieval,serving,sweep,track,serve,gbdt,audio]'
	touch $(STAMP)

install: $(STAMP)

# -n auto: one pytest-xdist worker per core (the tests are independent; each has its own tmp dirs)
test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -n auto

AS := $(VENV)/bin/archspec

# The main job on real bundled data: prepare, check, compile, train, evaluate against a trivial
# baseline, predict. Offline; a few minutes on 2 CPU cores.
demo: $(STAMP)
	$(AS) data prepare movies
	$(AS) validate specs/movie_tagger.yaml
	$(AS) build specs/movie_tagger.yaml
	rm -rf runs/demo
	$(AS) train specs/movie_tagger.yaml --out runs/demo --plot
	$(AS) evaluate runs/demo --data data/movies/test.csv --baseline
	$(AS) predict runs/demo --data data/movies/test.csv --out runs/demo/predictions.csv --show 4
	@echo "run directory: runs/demo  (learning curves: runs/demo/learning_curves.png)"

# Every spec in specs/ trained on its real data set; writes bench/results/examples.{json,md}.
examples: $(STAMP)
	$(PY) bench/examples.py

bench: $(STAMP)
	$(PY) bench/validate_startup.py

schema: $(STAMP)
	$(VENV)/bin/archspec schema > specs/archspec.schema.json

docs: $(STAMP)
	$(PY) -m archspec.docs_gen docs/spec.md

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
