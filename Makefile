# scratchcrypt build. `make test` and `make demo` are the two front doors; both
# install missing Debian packages first (apt-get, when run as root).
#
#   make            build build/scratchcrypt
#   make test       unit + filesystem + sanitizer + scheduler + package tests
#   make check-asan the unit and filesystem tests under ASan/UBSan
#   make demo       mount a real volume, run a sample job, wipe it, show it all
#   make bench      side-by-side benchmark (native, gocryptfs, securefs, us)
#   make bench-crypto  engine throughput next to `openssl speed`
#   make deb        the Debian package

CXX      ?= g++
BUILD    ?= build
PKGS     := fuse3 openssl libsodium
OPTFLAGS ?= -O2 -g
CXXFLAGS := $(OPTFLAGS) -std=c++20 -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers \
            -fno-plt -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=312 -I. -MMD -MP \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
GTEST_LIBS := -lgtest -lgtest_main
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

CRYPTO_SRC := $(wildcard crypto/*.cc)
FUSE_SRC   := $(wildcard fuse/*.cc)
TOOLS_SRC  := $(filter-out tools/main.cc,$(wildcard tools/*.cc))
UNIT_SRC   := $(wildcard tests/unit/*.cc)
FS_SRC     := $(wildcard tests/fs/*.cc)

obj = $(patsubst %.cc,$(BUILD)/obj/%.o,$(1))
CORE_OBJ := $(call obj,$(CRYPTO_SRC) $(FUSE_SRC) $(TOOLS_SRC))

# Debian packages the build, the tests and the demo need.
DEB_DEPS := g++ make pkg-config libfuse3-dev fuse3 libssl-dev openssl libsodium-dev \
            libgtest-dev python3 python3-cryptography e2fsprogs util-linux procps

.PHONY: all deps test unit-test fs-test check-asan demo bench bench-crypto deb \
        test-slurm test-package clean
all: $(BUILD)/scratchcrypt

deps:
	@tools/install-deps $(DEB_DEPS)

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/libscratchcrypt.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/scratchcrypt: $(call obj,tools/main.cc) $(BUILD)/libscratchcrypt.a
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/unit_tests: $(call obj,$(UNIT_SRC)) $(BUILD)/libscratchcrypt.a
	$(CXX) $(CXXFLAGS) $^ -o $@ $(GTEST_LIBS) $(LDLIBS)

$(BUILD)/fs_tests: $(call obj,$(FS_SRC)) $(BUILD)/libscratchcrypt.a
	$(CXX) $(CXXFLAGS) $^ -o $@ $(GTEST_LIBS) $(LDLIBS)

$(BUILD)/crypto_bench: $(call obj,tests/bench/crypto_bench.cc) $(BUILD)/libscratchcrypt.a
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

unit-test: deps $(BUILD)/unit_tests
	$(BUILD)/unit_tests

fs-test: deps $(BUILD)/fs_tests $(BUILD)/scratchcrypt
	SCRATCHCRYPT_BIN=$(abspath $(BUILD)/scratchcrypt) $(BUILD)/fs_tests

# The same tests built with AddressSanitizer and UBSan, in their own tree.
check-asan: deps
	$(MAKE) BUILD=build-asan OPTFLAGS="$(ASAN_FLAGS)" \
	    build-asan/unit_tests build-asan/fs_tests build-asan/scratchcrypt
	ASAN_OPTIONS=detect_leaks=1 build-asan/unit_tests
	SCRATCHCRYPT_BIN=$(abspath build-asan/scratchcrypt) build-asan/fs_tests

test: deps unit-test fs-test check-asan
	@echo "make test: all suites passed"

demo: deps $(BUILD)/scratchcrypt
	tools/demo

bench-crypto: deps $(BUILD)/crypto_bench
	$(BUILD)/crypto_bench

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
