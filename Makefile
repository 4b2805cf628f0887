# Every target creates .venv with pip if it is missing. torch is installed with pip only
# (uv/poetry would download CUDA builds; pip takes the local wheels where they exist).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench schema docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[torch,data,plot,test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/archspec validate specs/*.yaml
	for f in specs/*.yaml; do $(VENV)/bin/archspec build $$f || exit 1; done

bench: $(STAMP)
	$(PY) bench/validate_startup.py

schema: $(STAMP)
	$(VENV)/bin/archspec schema > specs/archspec.schema.json

docs: $(STAMP)
	$(PY) -m archspec.docs_gen docs/spec.md

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
