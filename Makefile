# Thin wrapper over CMake. Targets:
#   make            build build/deepseek (Release, -O3)
#   make run        install missing deps, build, run the main job on the default model
#   make test       install missing deps, build, run every test (ctest)
#   make test SANITIZE=1   the same with ASan+UBSan, in build-sanitize/
#   make bench      throughput benchmarks (not tests: they print figures)
#   make tiny-r1    the R1 recipe end to end (data, tokenizer, SFT, GRPO, eval) -> models/tiny-r1
#   make clean
MAKEFLAGS += --no-print-directory
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
  BUILD := build-sanitize
  CMAKE_FLAGS := -DDS_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
else
  BUILD := build
  CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Release
endif
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DS := $(BUILD)/deepseek
RUN_MODEL := $(BUILD)/models/tiny

.PHONY: all build deps test-deps run test bench tiny-r1 clean
all: build

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Until the tokenizer and the shipped model exist, the main job makes a small
# random-weight model and generates token ids from it: the whole load/forward/sample path.
run: deps build
	@test -f $(RUN_MODEL)/config.json || $(DS) init --preset tiny -o $(RUN_MODEL) --seed 1
	$(DS) info -m $(RUN_MODEL)
	$(DS) generate -m $(RUN_MODEL) --ids 0,17,42 -n 32 --temp 0.8 --top-p 0.95 --seed 7

test: test-deps build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@scripts/install-deps.sh --bench
	@sh bench/run.sh $(BUILD)

# ~90 minutes on 2 cores; reproducible from the seeds in the script.
tiny-r1: deps build
	@sh scripts/tiny-r1.sh

clean:
	rm -rf build build-sanitize
