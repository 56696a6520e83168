# omnireduce-p4 developer targets. The README's two commands need none of this; `make p4` needs p4c-bm2-ss.
P4C ?= p4c-bm2-ss
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
BUILD := p4src/build
P4C_VERSION = $(shell $(P4C) --version 2>&1 | grep -m1 -o 'Version [^ ]*')

# The open Tofino compiler: the p4c driver of a p4lang/p4c build with -DENABLE_TOFINO=ON (p4c-barefoot and bfas
# beside it), e.g. `make tofino TOFINO_P4C=/opt/tofino-build/build/p4c`. Its compile output goes to TNA_OUT (not
# committed); p4src/tna/build/ (Tofino 1) and p4src/tna/build-t2/ (Tofino 2, `make tofino2`) keep the summary, the
# context and BF Runtime JSON and the sources' digest. -g makes the compiler write the resource and PHV logs
# (pipe/logs/resources.json, phv.json) that the summary reads.
TOFINO_P4C ?= p4c
TNA_OUT ?= .tofino-out
TNA2_OUT ?= .tofino2-out
# For `make tofino-check` without a Tofino compiler: the TNA/T2NA includes (tna.p4, t2na.p4, tofino*_*.p4) of a p4c
# source tree.
TOFINO_P4INCLUDE ?= /opt/tofino-build/src/p4c/backends/tofino/bf-p4c/p4include
P4TEST ?= p4test

.PHONY: constants p4 p4-tests check-p4 tofino tofino2 tofino-check

# Regenerate the per-lane/per-worker P4 code and omnireduce.p4src.constants from sizes.p4/defines.p4/headers.p4.
constants:
	$(PYTHON) -m omnireduce.p4src.generate

# Compile the program with p4c and record the digest of its sources (commit p4src/build/ afterwards).
p4: constants
	mkdir -p $(BUILD)
	$(P4C) --arch v1model --std p4-16 --p4runtime-file $(BUILD)/omnireduce.p4info.txtpb --p4runtime-format text \
	    -o $(BUILD)/omnireduce.json p4src/omnireduce.p4
	$(PYTHON) -c "from omnireduce.p4src import artifacts as a; \
	    a.SOURCES_DIGEST.write_text(a.sources_digest() + '  p4src, compiled by p4c-bm2-ss $(P4C_VERSION)\n')"

# Recompile the softswitch's test programs (construct tests and the P4Runtime test program).
p4-tests:
	sh tests/softswitch/p4/compile.sh -p $(P4C)

check-p4:
	$(PYTHON) -m omnireduce.p4src.generate --check
	$(PYTHON) -c "from omnireduce.p4src import artifacts as a; assert a.sources_digest() == a.recorded_digest(), 'p4src/build is stale: run make p4'"

# $(call tofino_compile,TARGET,ARCH,OUT): compile the Tofino program for TARGET into OUT and record its resources,
# context/bf-rt JSON and sources' digest; the summary step fails if the compile uses more than the chip has.
define tofino_compile
	rm -rf $(3) && mkdir -p $(3)
	$(TOFINO_P4C) --target $(1) --arch $(2) --std p4-16 -g --bf-rt-schema $(3)/bf-rt.json -o $(3) p4src/tna/tna.p4
	$(PYTHON) -m omnireduce.p4src.tna.summary $(3) --target $(1) --compiler "$$($(TOFINO_P4C) --version 2>&1 | head -n1)"
endef

# Tofino 1 (commit p4src/tna/build/ afterwards).
tofino: constants
	$(call tofino_compile,tofino,tna,$(TNA_OUT))

# The same source for Tofino 2 (T2NA; tna.p4 includes t2na.p4 when __TARGET_TOFINO__ is 2): p4src/tna/build-t2/.
tofino2: constants
	$(call tofino_compile,tofino2,t2na,$(TNA2_OUT))

# Where no Tofino compiler is installed: the P4 front and mid end (p4test) over the Tofino program.
tofino-check: constants
	$(P4TEST) --std p4-16 -D__TARGET_TOFINO__=1 -I $(TOFINO_P4INCLUDE) p4src/tna/tna.p4
	$(P4TEST) --std p4-16 -D__TARGET_TOFINO__=2 -I $(TOFINO_P4INCLUDE) p4src/tna/tna.p4
