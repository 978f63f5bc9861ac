# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Installs are stamped on pyproject.toml, so a second run does not rebuild llama-cpp-python.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
TFGRPO_DATA ?= $(abspath ../shared/data)
export TFGRPO_DATA

.PHONY: demo test fuzz lint-imports install install-dev browser sandbox postgres bench bench-learning readme-results clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools

# llama.cpp's own `llama-server` (parallel slots: concurrent requests decode in one batch), built from
# the llama.cpp sources vendored in the llama-cpp-python sdist and installed as $(VENV)/bin/llama-server;
# tfgrpo/llm/local.py prefers it. Stamped even when the build fails (make then says so in one line and
# the embedded model falls back to llama_cpp.server); `rm $(LLAMA_SERVER_STAMP)` to try again.
LLAMA_CPP_PY := 0.3.36
# Native builds, but without AMX on x86-64: some virtual machines report AMX in cpuid yet fault on its first
# tile instruction (llama-server died with SIGSEGV at `ldtilecfg` in ggml's AMX matmul on such a VM), and
# on a 2-core machine AMX buys nothing for decoding. GCC and Clang let an explicit -mno-* win over
# -march=native whatever the order, so CMake's CFLAGS/CXXFLAGS reach ggml's native flags.
NO_AMX := $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_BUILD_ENV := CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)"
LLAMA_SERVER_STAMP := $(VENV)/.stamp-llama-server-$(LLAMA_CPP_PY)-noamx
LLAMA_PY_STAMP := $(VENV)/.stamp-llama-cpp-python-$(LLAMA_CPP_PY)-noamx
LLAMA_SERVER_TMP := $(VENV)/llama-server-build
LLAMA_CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
$(LLAMA_SERVER_STAMP): | $(PY)
	@d=$(LLAMA_SERVER_TMP); src=$$d/llama_cpp_python-$(LLAMA_CPP_PY)/vendor/llama.cpp; rm -rf $$d; mkdir -p $$d; \
	echo "building llama.cpp's llama-server from the llama-cpp-python $(LLAMA_CPP_PY) sdist (several minutes)"; \
	start=$$(date +%s); \
	if ( $(PIP) download -q --no-binary :all: --no-deps llama-cpp-python==$(LLAMA_CPP_PY) -d $$d \
	     && tar xzf $$d/llama_cpp_python-$(LLAMA_CPP_PY).tar.gz -C $$d \
	     && $(LLAMA_BUILD_ENV) cmake -S $$src -B $$d/build $(LLAMA_CMAKE_FLAGS) \
	     && cmake --build $$d/build -j$$(nproc 2>/dev/null || echo 2) --target llama-server \
	     && install -m 755 $$d/build/bin/llama-server $(VENV)/bin/llama-server ) > $$d.log 2>&1; then \
	  echo "llama-server built in $$(( $$(date +%s) - start ))s: $(VENV)/bin/llama-server"; \
	else echo "llama-server did not build (log: $$d.log); embedded model falls back to llama_cpp.server (slower)"; fi; \
	rm -rf $$d; touch $@

# the bindings (llama_cpp.server, the fallback engine), built from source with the same flags; no wheel
# cache, so a wheel built before with AMX is not reused
$(LLAMA_PY_STAMP): | $(PY)
	$(LLAMA_BUILD_ENV) $(PIP) install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==$(LLAMA_CPP_PY)
	touch $@

# runtime + embedded model server
$(VENV)/.stamp-local: pyproject.toml | $(PY) $(LLAMA_SERVER_STAMP) $(LLAMA_PY_STAMP)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[local]'
	touch $@

# everything the tests need: + grpo (torch CPU wheel pinned) + dev tools
$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-local
	$(PIP) install -e '.[local,grpo,dev]'
	touch $@

install: $(VENV)/.stamp-local
install-dev: $(VENV)/.stamp-dev

# headless Chromium for the report's browser test (Debian packages); skipped quietly where apt is absent
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "chromium could not be installed; the browser test will be skipped"; \
	  else echo "no apt/root: the browser test will be skipped"; fi; fi

# bubblewrap for the agent's python tool sandbox (tasks/agent/bwrap.py; Debian package); where apt is absent
# the python tool refuses to run until it is installed (or --sandbox process opts into the weaker sandbox)
sandbox:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
	      || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null)) \
	      || echo "bubblewrap could not be installed; the agent's python tool will refuse to run"; \
	  else echo "no apt/root: install bubblewrap (bwrap) for the agent's python tool sandbox"; fi; fi

# PostgreSQL's server programs (initdb, pg_ctl; Debian package) for the Postgres half of the store tests, which
# start a throwaway server of their own (tests/pgserver.py); where apt is absent those tests fail saying how to
# install it (TFGRPO_SKIP_POSTGRES=1 skips them)
postgres:
	@if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq postgresql >/dev/null 2>&1 \
	      || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)) \
	      || echo "postgresql could not be installed; the Postgres store tests will fail (TFGRPO_SKIP_POSTGRES=1 skips them)"; \
	  else echo "no apt/root: install PostgreSQL's server (initdb, pg_ctl) for the Postgres store tests, or set TFGRPO_SKIP_POSTGRES=1"; fi; fi

demo: $(VENV)/.stamp-local sandbox
	$(VENV)/bin/tfgrpo demo

# the layer contracts in pyproject.toml ([tool.importlinter]), then every test; the fuzzers run
# derandomized here (hypothesis profile "ci"), so a run on any machine tries the same inputs
test: $(VENV)/.stamp-dev browser sandbox postgres lint-imports
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -ra

lint-imports: $(VENV)/.stamp-dev
	$(VENV)/bin/lint-imports

# the fuzzers deep and random (20,000 examples each); a find prints its reproducer: keep it as an @example
fuzz: $(VENV)/.stamp-dev
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -ra -p no:cacheprovider tests/cli/test_fuzz_cli.py \
	  tests/serve/test_fuzz_proxy.py tests/tasks/test_fuzz_inputs.py

$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-dev
	$(PIP) install -e '.[local,grpo,dev,bench]'
	touch $@

bench: $(VENV)/.stamp-bench
	$(PY) bench/run_all.py

bench-learning: $(VENV)/.stamp-bench
	$(PY) bench/learning.py

readme-results: $(PY)
	$(PY) bench/readme_results.py

clean:
	rm -rf $(VENV) .pytest_cache
