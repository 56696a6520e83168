# omnireduce-p4 developer targets. The README's two commands need none of this; `make p4` needs p4c-bm2-ss.
P4C ?= p4c-bm2-ss
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
BUILD := p4src/build
P4C_VERSION = $(shell $(P4C) --version 2>&1 | grep -m1 -o 'Version [^ ]*')

.PHONY: constants p4 p4-tests check-p4

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
