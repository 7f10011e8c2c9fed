# scratchcrypt build. `make test` and `make demo` are the two front doors; both
# install missing Debian packages first (apt-get, when run as root).
#
#   make              build build/scratchcrypt
#   make test         every test: unit, filesystem, format, key lifecycle,
#                     outside exercisers (short), sanitizers, Azure Batch
#                     scripts, a real Slurm node and a three-node Slurm cluster,
#                     the Debian package
#   make test-full    make test, then every outside exerciser at length
#   make exercise     stress-ng and fio on real volumes of both layouts
#   make check-asan   unit and filesystem tests under ASan + UBSan
#   make soak         1,000 job cycles through one node, checking nothing grows
#   make demo         mount a real volume, run a sample job, wipe it, show it
#   make bench        side-by-side benchmark (native, gocryptfs, securefs, us)
#   make bench-quick  the same in about 3 minutes
#   make bench-crypto the engine's throughput next to `openssl speed`
#   make deb          the Debian package (build/deb/)
#   make install      install into $(DESTDIR)$(PREFIX)

CXX      ?= g++
BUILD    ?= build
PREFIX   ?= /usr
DESTDIR  ?=
PKGS     := fuse3 openssl libsodium
OPTFLAGS ?= -O2 -g
CXXFLAGS := $(OPTFLAGS) -std=c++20 -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers \
            -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=312 -I. -MMD -MP \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
GTEST_LIBS := -lgtest -lgtest_main
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
Q        := $(if $(V),,@)
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

CRYPTO_SRC := $(wildcard crypto/*.cc)
FUSE_SRC   := $(wildcard fuse/*.cc)
TOOLS_SRC  := $(filter-out tools/main.cc,$(wildcard tools/*.cc))
obj = $(patsubst %.cc,$(BUILD)/obj/%.o,$(1))
CORE_OBJ := $(call obj,$(CRYPTO_SRC) $(FUSE_SRC) $(TOOLS_SRC))
test_obj = $(call obj,$(wildcard tests/$(1)/*.cc))

# Debian packages the build, the tests and the demo need.
DEB_DEPS := g++ make pkg-config libfuse3-dev fuse3 libssl-dev openssl libsodium-dev \
            libgtest-dev python3 python3-cryptography python3-prometheus-client e2fsprogs util-linux \
            procps keyutils gdb stress-ng fio strace

.PHONY: all deps test test-full unit-test fs-test format-test lifecycle-test slurm-test \
        slurm-multinode-test package-test batch-test soak exercise exercise-full check-asan demo \
        bench bench-quick bench-crypto deb install clean
all: $(BUILD)/scratchcrypt

deps:
	@tools/install-deps $(DEB_DEPS)

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/libscratchcrypt.a: $(CORE_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/scratchcrypt: $(call obj,tools/main.cc) $(BUILD)/libscratchcrypt.a
	@echo "  LINK    $@"
	$(Q)$(CXX) $(CXXFLAGS) $^ -o $@.tmp $(LDLIBS) && mv $@.tmp $@

$(BUILD)/unit_tests: $(call test_obj,unit) $(BUILD)/libscratchcrypt.a
	@echo "  LINK    $@"
	$(Q)$(CXX) $(CXXFLAGS) $(filter %.o %.a,$^) -o $@ $(GTEST_LIBS) $(LDLIBS)
$(BUILD)/fs_tests: $(call test_obj,fs) $(BUILD)/libscratchcrypt.a
	@echo "  LINK    $@"
	$(Q)$(CXX) $(CXXFLAGS) $(filter %.o %.a,$^) -o $@ $(GTEST_LIBS) $(LDLIBS)
$(BUILD)/lifecycle_tests: $(call test_obj,lifecycle) $(call obj,tests/fs/mount_fixture.cc) \
                          $(BUILD)/libscratchcrypt.a
	@echo "  LINK    $@"
	$(Q)$(CXX) $(CXXFLAGS) $(filter %.o %.a,$^) -o $@ $(GTEST_LIBS) $(LDLIBS)
$(BUILD)/crypto_bench: $(call obj,tests/bench/crypto_bench.cc) $(BUILD)/libscratchcrypt.a
	$(Q)$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

SC_ENV = SCRATCHCRYPT_BIN=$(abspath $(BUILD)/scratchcrypt)

unit-test: deps $(BUILD)/unit_tests
	$(BUILD)/unit_tests

# The suite runs once per layout; the block layout needs loop devices.
fs-test: deps $(BUILD)/fs_tests $(BUILD)/scratchcrypt
	$(SC_ENV) $(BUILD)/fs_tests
	$(SC_ENV) SCRATCHCRYPT_TEST_LAYOUT=block $(BUILD)/fs_tests

format-test: deps $(BUILD)/scratchcrypt
	/usr/bin/python3 tests/format/verify_format.py selftest
	$(SC_ENV) /usr/bin/python3 tests/format/check_backing_volume.py
	$(SC_ENV) /usr/bin/python3 tests/format/check_block_volume.py

lifecycle-test: deps $(BUILD)/lifecycle_tests $(BUILD)/scratchcrypt
	$(SC_ENV) $(BUILD)/lifecycle_tests

# Outside exercisers (stress-ng, fio) on a files- and a block-layout volume,
# compared with tests/exercisers/expected-failures (docs/TESTING.md).
exercise: deps $(BUILD)/scratchcrypt
	$(SC_ENV) /usr/bin/python3 tests/exercisers/run.py

exercise-full: deps $(BUILD)/scratchcrypt
	$(SC_ENV) /usr/bin/python3 tests/exercisers/run.py --full

slurm-test: deps $(BUILD)/scratchcrypt
	$(SC_ENV) bash tests/slurm/run_slurm_test.sh

# slurmctld and three slurmd nodes, each in its own UTS + mount namespace (docs/TESTING.md)
slurm-multinode-test: deps $(BUILD)/scratchcrypt
	$(SC_ENV) bash tests/slurm/run_multinode_test.sh

package-test: deps
	bash tests/package/run.sh

# Many prologue/job/epilogue cycles through one node (SOAK_CYCLES, default 1000) in
# every layout; asserts that nothing grows. Not part of `make test` (docs/TESTING.md).
soak: deps $(BUILD)/scratchcrypt
	$(SC_ENV) /usr/bin/python3 tests/soak/soak.py

# The Azure Batch start task, job preparation and job release scripts, run with
# the environment Batch sets (about 5 s).
batch-test: deps $(BUILD)/scratchcrypt
	$(SC_ENV) bash tests/azure-batch/run.sh

# The unit and filesystem tests built with AddressSanitizer and UBSan.
check-asan: deps
	$(MAKE) --no-print-directory -j$(JOBS) BUILD=build-asan OPTFLAGS="$(ASAN_FLAGS)" \
	    build-asan/unit_tests build-asan/fs_tests build-asan/scratchcrypt
	ASAN_OPTIONS=detect_leaks=1 build-asan/unit_tests
	ASAN_OPTIONS=detect_leaks=0 SCRATCHCRYPT_BIN=$(abspath build-asan/scratchcrypt) build-asan/fs_tests

test: deps
	$(MAKE) --no-print-directory -j$(JOBS) all $(BUILD)/unit_tests $(BUILD)/fs_tests \
	    $(BUILD)/lifecycle_tests
	$(MAKE) --no-print-directory unit-test fs-test format-test lifecycle-test batch-test exercise \
	    check-asan slurm-test slurm-multinode-test package-test
	@echo "make test: every suite passed"

test-full: test
	$(MAKE) --no-print-directory exercise-full
	@echo "make test-full: every suite passed"

demo: deps $(BUILD)/scratchcrypt
	tools/demo

# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--tree-files 20000".
bench: deps $(BUILD)/scratchcrypt
	/usr/bin/python3 tools/bench/bench.py $(BENCH_ARGS)

bench-quick: deps $(BUILD)/scratchcrypt
	/usr/bin/python3 tools/bench/bench.py --quick $(BENCH_ARGS)

bench-crypto: deps $(BUILD)/crypto_bench
	$(BUILD)/crypto_bench

deb: deps
	packaging/build-deb

install: $(BUILD)/scratchcrypt
	install -D -m 0755 $(BUILD)/scratchcrypt $(DESTDIR)$(PREFIX)/sbin/scratchcrypt
	install -D -m 0644 packaging/scratchcrypt.8 $(DESTDIR)$(PREFIX)/share/man/man8/scratchcrypt.8

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
