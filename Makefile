# Test tiers (tests/unit, tests/kernels, tests/integration; docs: README "Entry points").
PY ?= .venv/bin/python
PYTEST = $(PY) -m pytest -q

.PHONY: test test-unit test-kernels test-integration
test:              ## every tier (what CI runs)
	$(PYTEST)
test-unit:         ## fast: data, patching, network, objectives, forecasting policy, configs
	$(PYTEST) tests/unit
test-kernels:      ## attention kernels (TRITON_INTERPRET=1 on CPU) and host-sync budgets
	$(PYTEST) tests/kernels
test-integration:  ## real data, DeepSpeed runs, releases, the evaluation harness
	$(PYTEST) tests/integration
