# tlsharness — two commands on a fresh machine:
#   make demo   set up, then run the main job
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
NATIVE := harness/_native/build.json
NATIVE_SRC := $(wildcard native_shim/src/*.c native_shim/src/*.h native_shim/include/*.h native_shim/bindings/*.py) native_shim/build.py native_shim/cdef.py

.PHONY: setup system-deps demo test bench clean debug-openssl kamailio6 libs opensips

setup: system-deps $(VENV)/.installed $(NATIVE)

system-deps:
	@tools/system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check "setuptools>=61" wheel
	$(VPY) -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[test,campaign,stacks]"
	@touch $@

# other library versions (Debian bullseye builds in private prefixes under build/libs);
# a failure only skips them, with the reason
build/libs/.fetched: native_shim/variants.toml native_shim/fetch.py | $(VENV)/.installed
	-$(VPY) -m native_shim.fetch
	@mkdir -p build/libs && touch $@

$(NATIVE): $(VENV)/.installed build/libs/.fetched $(NATIVE_SRC) native_shim/variants.toml
	$(VPY) -m native_shim.build

demo: setup
	$(VENV)/bin/tlsharness demo

test: setup
	$(VPY) -m pytest -q

bench: setup
	$(VPY) bench/throughput.py

# OpenSSL 3.0 with symbols, from Debian's source package of the installed
# version: readable stacks for triage (tlsharness run --lib openssl@3.0-debug)
debug-openssl: setup
	$(VPY) -m native_shim.fetch --only openssl@3.0-debug
	$(VPY) -m native_shim.build

# today's library versions from Debian source packages of newer suites, with
# the options a multi-process server needs (native_shim/variants.toml, recipes
# with `source`): slow, cached (rebuilt only when a recipe changes), not part of
# setup; a build that cannot be done here is listed by `tlsharness libs` with why
#   make libs LIBS="mbedtls@3.6 wolfssl@5.7"   only these (what CI builds)
libs: setup
	@tools/system-deps.sh libs
	-$(VPY) -m native_shim.srcbuild $(if $(LIBS),--only "$(LIBS)")
	$(VPY) -m native_shim.build

# Kamailio 6.x from Debian's source package (trixie, else forky/sid), core +
# tls sl ctl kex corex + kamcmd, into build/kamailio6/root (optional, about a
# minute): tlsharness target kamailio --kamailio-build kamailio6.
# With KAMAILIO_SOURCE=kamailio-6.1.4.tar.gz (a release tarball or a source
# tree): that release, into the user's cache (tlsharness servers build kamailio):
# tlsharness target kamailio --kamailio-build kamailio-6.1.4
kamailio6: setup
	@if [ -n "$(KAMAILIO_SOURCE)" ]; then \
	  $(VENV)/bin/tlsharness servers build kamailio --from-source "$(KAMAILIO_SOURCE)"; \
	else $(VPY) -m native_shim.fetch_kamailio; fi

# OpenSIPS from a release tarball (or a source tree) into the user's cache,
# with tls_openssl (or tls_wolfssl), optional, about 2 minutes each:
#   make opensips OPENSIPS_SOURCE=opensips-3.6.8.tar.gz [OPENSIPS_ARGS="--tls-lib wolfssl"]
# then: tlsharness servers; tlsharness target opensips
opensips: setup
	@tools/system-deps.sh libs
	@if [ -z "$(OPENSIPS_SOURCE)" ]; then \
	  echo "make opensips: give OPENSIPS_SOURCE=PATH (an OpenSIPS release tarball such as opensips-3.6.8.tar.gz, or a source tree)" >&2; exit 2; fi
	$(VENV)/bin/tlsharness servers build opensips --from-source "$(OPENSIPS_SOURCE)" $(OPENSIPS_ARGS)

clean:
	rm -rf build harness/_native/*.so $(NATIVE)
