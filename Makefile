# cairn -- a plain Makefile. `make` builds build/cairnd; `make test` runs every suite.
#   make EXTRA_CFLAGS=...             -> add flags (CFLAGS= on the command line replaces them all)
#   make SANITIZE=address,undefined   -> build-address-undefined/
#   make SANITIZE=thread              -> build-thread/
#   make FAULTS=1                     -> build-faults/ (fault-injection routes and signals)

CC       ?= cc
PKGS      = libmicrohttpd jansson libconfig libsystemd
PREFIX   ?= /usr/local
SBINDIR  ?= $(PREFIX)/sbin
UNITDIR  ?= /etc/systemd/system
CONFDIR  ?= /etc/cairn
DESTDIR  ?=
VERSION   = 0.1.0

comma := ,
SANITIZE ?=
FAULTS   ?=
BUILD    ?= build$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))$(if $(FAULTS),-faults)

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Isrc -D_GNU_SOURCE -DCAIRN_VERSION='"$(VERSION)"' -pthread \
            -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat -Wformat-security -Wvla -Wpointer-arith -Wundef -Wnull-dereference \
            -fno-common -fstack-protector-strong
CFLAGS   += $(shell pkg-config --cflags $(PKGS)) $(EXTRA_CFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -pthread
ifneq ($(SANITIZE),)
# gcc 12 misreports vsnprintf(NULL, 0, ...) as a null format under -fsanitize
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -O1 -Wno-format-truncation
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
ifneq ($(FAULTS),)
CFLAGS   += -DCAIRN_FAULTS
endif

LIB_SRCS  = src/util.c src/log.c src/notify.c src/config.c src/reply.c src/router.c \
            src/stats.c src/http.c src/mod_health.c src/mod_stats.c src/mod_collections.c src/query.c \
            src/store/doc.c src/store/pmap.c src/store/idmap.c src/store/coll.c src/store/snap.c src/store/store.c \
            src/store/record.c src/store/iofault.c src/store/load.c src/store/snapfile.c \
            src/store/wal.c src/store/durable.c
ifneq ($(FAULTS),)
LIB_SRCS += src/mod_debug.c
endif
MAIN_SRCS = src/main.c
LIB_OBJS  = $(LIB_SRCS:src/%.c=$(BUILD)/%.o)
MAIN_OBJS = $(MAIN_SRCS:src/%.c=$(BUILD)/%.o)

UNIT_TESTS = test_util test_config test_router test_reply test_query test_pmap test_idmap test_store test_wal
UNIT_BINS  = $(UNIT_TESTS:%=$(BUILD)/tests/%)

.PHONY: all unit-tests test test-quick crash-soak run install uninstall format lint clean \
        bench bench-quick bench-modes
all: $(BUILD)/cairnd

$(BUILD)/cairnd: $(LIB_OBJS) $(MAIN_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Isrc -MMD -MP -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD):
	mkdir -p $(BUILD)/store $(BUILD)/tests

unit-tests: $(UNIT_BINS)

# The one entry point: unit tests, integration tests against the real binary
# (plain, address+undefined, thread sanitizer builds) and the systemd tests.
test:
	tests/run.sh

# Unit and integration tests on the plain build only.
test-quick:
	CAIRN_TEST_QUICK=1 tests/run.sh

# The crash tests (tests/integration/test_crash.py) well past what CI runs: 50 kill -9
# cycles and 300 power-loss points by default; also with SANITIZE=...
crash-soak:
	$(MAKE) SANITIZE=$(SANITIZE) all
	$(MAKE) SANITIZE=$(SANITIZE) FAULTS=1 all
	CAIRN_CRASH_CYCLES=$${CAIRN_CRASH_CYCLES:-50} CAIRN_POWERLOSS_POINTS=$${CAIRN_POWERLOSS_POINTS:-300} \
		CAIRND=$(BUILD)/cairnd CAIRND_FAULTS=$(BUILD)-faults/cairnd \
		python3 tests/integration/run.py test_crash

# Foreground, shipped config, data under the checkout.
run: $(BUILD)/cairnd
	mkdir -p var
	$(BUILD)/cairnd -c conf/cairnd.conf --data-dir var

install: $(BUILD)/cairnd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/cairnd $(DESTDIR)$(SBINDIR)/cairnd
	@if [ -e $(DESTDIR)$(CONFDIR)/cairnd.conf ]; then \
		echo "keeping existing $(DESTDIR)$(CONFDIR)/cairnd.conf"; \
	else \
		install -m 644 conf/cairnd.conf $(DESTDIR)$(CONFDIR)/cairnd.conf; \
	fi
	sed 's|@SBINDIR@|$(SBINDIR)|g; s|@CONFDIR@|$(CONFDIR)|g' systemd/cairnd.service.in \
		> $(DESTDIR)$(UNITDIR)/cairnd.service
	install -m 644 systemd/cairnd.socket $(DESTDIR)$(UNITDIR)/cairnd.socket
	chmod 644 $(DESTDIR)$(UNITDIR)/cairnd.service

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cairnd $(DESTDIR)$(UNITDIR)/cairnd.service \
		$(DESTDIR)$(UNITDIR)/cairnd.socket

format:
	clang-format -i src/*.c src/*.h src/store/*.[ch] tests/unit/*.c 2>/dev/null || \
		clang-format -i src/*.c src/*.h tests/unit/*.c

lint:
	clang-format --dry-run --Werror src/*.c src/*.h
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c11 \
		--suppress=missingIncludeSystem --suppress=nullPointerRedundantCheck \
		-D_GNU_SOURCE -Isrc src

# cairnd beside nginx, gin, Go net/http and json-server; writes docs/PERFORMANCE.md.
# Full run about 30-34 min; quick under 5. bench/run.sh installs missing peers with bench/deps.sh.
bench: all
	bench/run.sh

bench-quick: all
	bench/run.sh --quick

# Threading-mode sweep (about 17 min): bench/modes/sweep.sh, knobs ROUNDS DURATION CONNS SERVERS NICE.
bench-modes:
	bench/modes/sweep.sh

clean:
	rm -rf build build-* var

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJS:.o=.d) $(UNIT_BINS:=.d)
