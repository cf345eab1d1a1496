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
RUN_MODEL := models/tiny-r1

.PHONY: all build deps test-deps run test bench tiny-r1 clean
all: build

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job: the shipped reasoning model (models/tiny-r1, made by `make tiny-r1`) works
# through a 4-digit addition column by column and streams its reasoning and boxed answer.
RUN_PROMPT ?= What is 4738 + 2925?
run: deps build
	$(DS) run -m $(RUN_MODEL) -p "$(RUN_PROMPT)" --temp 0 -n 400

test: test-deps build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@scripts/install-deps.sh --bench
	@sh bench/run.sh $(BUILD)

# ~66 minutes on 2 cores (SFT 40, GRPO 18, eval 8); reproducible from the seeds in the script.
tiny-r1: deps build
	@sh scripts/tiny-r1.sh

clean:
	rm -rf build build-sanitize
