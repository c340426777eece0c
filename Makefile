# OneBlog top-level Makefile: builds libcnode, its examples, benchmarks and
# unit tests into one variant directory, and runs the test suites.
#
#   make                      build everything into build/{lib,bin,obj,tests}
#   make test                 install missing Debian packages, build, run all tests
#   make test-unit|test-integ only one kind of test
#   make test-asan            the same tests under SANITIZE=address,undefined
#   make SANITIZE=thread test any sanitizer; builds go to build/san/
#   make OPT=-O0 CC=clang     variants by variable; changed flags rebuild the variant
#   make V=1                  show the full commands
#   make bench-runtime | bench-http | bench-rpc | bench-vproc | run | clean
#
# Layout (B is the variant root: build, or build/san when SANITIZE is set):
#   cnode/src/*.c                   -> $(B)/lib/libcnode.a
#   examples/NAME.c                 -> $(B)/bin/cnode-NAME
#   bench/NAME.c                    -> $(B)/bin/bench-NAME
#   tests/unit/DIR/NAME_test.c      -> $(B)/tests/DIR/NAME_test
#   tests/integ/c/NAME.c            -> $(B)/bin/test-NAME (integration helpers)
#   any X.c                         -> $(B)/obj/X.o (+ X.d header dependencies)

# make predefines CC=cc, so a plain `CC ?= gcc` would never apply.
ifeq ($(origin CC),default)
CC := gcc
endif
CC       ?= gcc
AR       ?= ar
OPT      ?= -O2 -g
SANITIZE ?=
WERROR   ?= -Werror

MAKEFLAGS += --no-builtin-rules
.SUFFIXES:
.DELETE_ON_ERROR:
.DEFAULT_GOAL := all

# ---------------------------------------------------------------------------
# Variant and flags
# ---------------------------------------------------------------------------

ifneq ($(FUZZ),)
# make fuzz: clang with libFuzzer's coverage instrumentation, ASan and UBSan.
B := build/fuzz
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
else ifeq ($(SANITIZE),)
B := build
SANFLAGS :=
else
B := build/san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
endif

ERL_ROOT := /usr/lib/erlang/usr

CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wstrict-prototypes \
          -Wmissing-prototypes -Wshadow -Wformat=2 \
          -Werror=implicit-function-declaration -fno-omit-frame-pointer \
          -pthread $(WERROR) $(OPT) -MMD -MP \
          -Icnode/include -I$(ERL_ROOT)/include $(SANFLAGS)
LDFLAGS := $(SANFLAGS)

LIB := $(B)/lib/libcnode.a
# libei is static (only libei.a is shipped); from Boost.Context we use just
# the fcontext assembly (jump_fcontext/make_fcontext), callable from C.
# libcrypto (OpenSSL) gives the MD5 of the distribution handshake; libssl the
# optional TLS of distribution connections (dist_tls.c); libpq the
# PostgreSQL store of virtual processes.
# The HTTP server parses with nodejs's http_parser and compresses with zlib.
# The cluster module: c-ares (DNS discovery), libcurl + jansson (ECS discovery),
# libcrypto (gossip HMAC, SigV4).
# Static archives are found where the compiler finds libraries (the multiarch
# directory of whatever machine builds), not at a spelt-out x86_64 path.
static_lib = $(shell $(CC) -print-file-name=$(1))
CNODE_LIBS := $(LIB) -L$(ERL_ROOT)/lib -lei \
              $(call static_lib,libboost_context.a) -lssl -lcrypto -lhttp_parser -lz \
              -lcares -lcurl -ljansson -lpq -pthread -lm

# The vproc PostgreSQL store (cnode/src/vproc_store_pg.c) uses libpq.
$(B)/obj/cnode/src/vproc_store_pg.o: CFLAGS += -I/usr/include/postgresql
$(B)/obj/tests/unit/cnode/vproc_test.o: CFLAGS += -I/usr/include/postgresql

# Unit tests reach test.h and the library's private *_int.h headers.
TEST_CFLAGS := -Itests/unit -Icnode/src

# gen_server modules (cnode/code.h): objects compiled position-independent
# with hidden visibility into $(B)/pic/ (only cn_module_info is exported, so a
# module's own functions bind inside it and a new version never calls into an
# old one), linked as $(MOD_DIR)/NAME.so. --gc-sections drops what the module
# does not reach, so it needs from its host only what it really calls. Hosts
# export the runtime with a --dynamic-list (CNODE_HOST_LDFLAGS).
PIC_CFLAGS         := -fPIC -fvisibility=hidden -ffunction-sections -fdata-sections
MODULE_LDFLAGS     := -shared -Wl,--gc-sections -Wl,-z,now
CNODE_HOST_LDFLAGS := -Wl,--dynamic-list=cnode/module-host.list
MOD_DIR            := $(B)/lib/modules
PIC_OBJ            :=

ifeq ($(V),)
Q := @
else
Q :=
endif

# ---------------------------------------------------------------------------
# Sources and products (every list may be empty)
# ---------------------------------------------------------------------------

LIB_SRC     := $(wildcard cnode/src/*.c)
EXAMPLE_SRC := $(wildcard examples/*.c)
BENCH_SRC   := $(wildcard bench/*.c)
TEST_SRC    := $(sort $(shell find tests/unit -name '*_test.c' 2>/dev/null))
# Helper programs of the integration tests: tests/integ/c/NAME.c -> bin/test-NAME
INTEG_C_SRC := $(wildcard tests/integ/c/*.c)

LIB_OBJ     := $(LIB_SRC:%.c=$(B)/obj/%.o)

# common/: code the services share (buffers, value trees, Mustache templates).
COMMON_SRC  := $(wildcard common/*.c)
COMMON_OBJ  := $(COMMON_SRC:%.c=$(B)/obj/%.o)
COMMON_LIB  := $(B)/lib/libcommon.a
COMMON_LIBS := $(COMMON_LIB) -ljansson
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(B)/bin/cnode-%)
BENCH_BIN   := $(BENCH_SRC:bench/%.c=$(B)/bin/bench-%)
TEST_BIN    := $(TEST_SRC:tests/unit/%.c=$(B)/tests/%)
INTEG_C_BIN := $(INTEG_C_SRC:tests/integ/c/%.c=$(B)/bin/test-%)
ALL_OBJ     := $(LIB_OBJ) $(COMMON_OBJ) $(patsubst %.c,$(B)/obj/%.o,$(EXAMPLE_SRC) $(BENCH_SRC) $(TEST_SRC) $(INTEG_C_SRC))

# oneblog-cms (cms/) and the RPC contract shared with the client (proto/).
# Unit tests under tests/unit/cms/ link every cms object but main.o; those under
# tests/unit/proto/ link the proto objects.
CMS_SRC     := $(wildcard cms/*.c)
PROTO_SRC   := $(wildcard proto/*.c)
CMS_OBJ     := $(CMS_SRC:%.c=$(B)/obj/%.o)
PROTO_OBJ   := $(PROTO_SRC:%.c=$(B)/obj/%.o)
CMS_LIBOBJ  := $(filter-out $(B)/obj/cms/main.o,$(CMS_OBJ)) $(PROTO_OBJ)
CMS_BIN     := $(if $(CMS_SRC),$(B)/bin/oneblog-cms)
CMS_CFLAGS  := -I. -Icommon -I/usr/include/postgresql
CMS_LIBS    := -lpq -lsqlite3 -lmd4c-html -lmd4c -lyaml -ljansson -largon2 $(COMMON_LIB)
ALL_OBJ     += $(CMS_OBJ) $(PROTO_OBJ)

$(B)/obj/cms/%.o $(B)/obj/proto/%.o: CFLAGS += $(CMS_CFLAGS)

# The release version (VERSION, or make VERSION=x.y.z): the default version the
# services announce in the cluster (ONEBLOG_VERSION overrides it at run time).
VERSION     ?= $(shell cat VERSION 2>/dev/null || echo 0.0.0)
$(B)/obj/cms/config.o $(B)/obj/client/main.o: CFLAGS += -DONEBLOG_BUILD_VERSION='"$(VERSION)"'
$(B)/obj/cms/config.o $(B)/obj/client/main.o: $(wildcard VERSION)
$(B)/obj/tests/unit/cms/%.o $(B)/obj/tests/unit/proto/%.o: CFLAGS += $(CMS_CFLAGS) -Icms

all: $(CMS_BIN)

$(B)/bin/oneblog-cms: $(CMS_OBJ) $(PROTO_OBJ) $(LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) $(RECS_HOST_LDFLAGS) -o $@ $(CMS_OBJ) $(PROTO_OBJ) $(RECS_LIB) $(EVENTS_LIBS) $(CMS_LIBS) $(CNODE_LIBS)

$(B)/tests/cms/%: $(B)/obj/tests/unit/cms/%.o $(CMS_LIBOBJ) $(LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CMS_LIBOBJ) $(CMS_LIBS) $(CNODE_LIBS)

$(B)/tests/proto/%: $(B)/obj/tests/unit/proto/%.o $(PROTO_OBJ) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(PROTO_OBJ) $(CNODE_LIBS)

# The RPC contract's fuzz target (make fuzz) links the proto codecs.
$(B)/fuzz/proto_%: $(B)/obj/tests/fuzz/proto_%.o $(PROTO_OBJ) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(PROTO_OBJ) $(CNODE_LIBS)

# events/: the event log library (file, MongoDB and PostgreSQL stores, the events
# gen_server) -> $(B)/lib/libevents.a; events/cli.c -> $(B)/bin/oneblog-events.
# Its unit tests (tests/unit/events/), helpers (tests/integ/c/events_*.c) and
# benchmark (bench/events.c) link libevents, libcommon and libcnode.
EVENTS_SRC    := $(filter-out events/cli.c,$(wildcard events/*.c))
EVENTS_OBJ    := $(EVENTS_SRC:%.c=$(B)/obj/%.o)
EVENTS_LIB    := $(B)/lib/libevents.a
EVENTS_BIN    := $(if $(wildcard events/cli.c),$(B)/bin/oneblog-events)
EVENTS_CFLAGS := -I. -I/usr/include/libbson-1.0 -I/usr/include/libmongoc-1.0 \
                 -I/usr/include/postgresql
# libdeflate statically (as boost_context above): its CRC-32 for the file log's
# frames, and no new runtime library in the images.
EVENTS_LIBS   := $(EVENTS_LIB) $(COMMON_LIB) -lmongoc-1.0 -lbson-1.0 -lpq -lcrypto -lz \
                 $(call static_lib,libdeflate.a)
ALL_OBJ       += $(EVENTS_OBJ) $(if $(EVENTS_BIN),$(B)/obj/events/cli.o)

$(B)/obj/events/%.o: CFLAGS += $(EVENTS_CFLAGS)
$(B)/obj/tests/unit/events/%.o: CFLAGS += $(EVENTS_CFLAGS)
$(B)/obj/tests/integ/c/events_%.o: CFLAGS += $(EVENTS_CFLAGS)
$(B)/obj/bench/events.o: CFLAGS += $(EVENTS_CFLAGS)

lib: $(EVENTS_LIB)
all: $(EVENTS_BIN)

$(EVENTS_LIB): $(EVENTS_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/bin/oneblog-events: $(B)/obj/events/cli.o $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(RECS_LINK) $(EVENTS_LIBS) $(CNODE_LIBS)

$(B)/bin/bench-events: $(B)/obj/bench/events.o $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(EVENTS_LIBS) $(CNODE_LIBS)

$(B)/bin/test-events_%: $(B)/obj/tests/integ/c/events_%.o $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(EVENTS_LIBS) $(CNODE_LIBS)

$(B)/tests/events/%: $(B)/obj/tests/unit/events/%.o $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(EVENTS_LIBS) $(CNODE_LIBS)

# make bench-events: figures only (bench/events.sh starts its own PostgreSQL).
.PHONY: bench-events
bench: bench-events
bench-events: $(B)/bin/bench-events
	$(Q)ONEBLOG_BUILD=$(B) bash bench/events.sh

# The event log's fuzz target (make fuzz) links libevents too.
$(B)/obj/tests/fuzz/events_%.o: CFLAGS += $(EVENTS_CFLAGS)
$(B)/fuzz/events_%: $(B)/obj/tests/fuzz/events_%.o $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(EVENTS_LIBS) $(CNODE_LIBS)

# end of events/

# recs/: recommendation models, the `recs` gen_server, snapshots, replay
# -> $(B)/lib/librecs.a; recs/main.c -> $(B)/bin/oneblog-recs (a node running
# `events` and `recs`). oneblog-events links librecs for replay and ab-report.
# Unit tests (tests/unit/recs/) and bench/recs.c link librecs, proto, libevents.
RECS_SRC    := $(filter-out recs/main.c,$(wildcard recs/*.c))
RECS_OBJ    := $(RECS_SRC:%.c=$(B)/obj/%.o)
RECS_LIB    := $(B)/lib/librecs.a
RECS_BIN    := $(if $(wildcard recs/main.c),$(B)/bin/oneblog-recs)
RECS_LINK   := $(RECS_LIB) $(PROTO_OBJ)
ALL_OBJ     += $(RECS_OBJ) $(if $(RECS_BIN),$(B)/obj/recs/main.o)

$(B)/obj/recs/%.o: CFLAGS += $(EVENTS_CFLAGS) $(CMS_CFLAGS)
$(B)/obj/tests/unit/recs/%.o: CFLAGS += $(EVENTS_CFLAGS) $(CMS_CFLAGS)
$(B)/obj/bench/recs.o: CFLAGS += $(EVENTS_CFLAGS) $(CMS_CFLAGS)

lib: $(RECS_LIB)
all: $(RECS_BIN)

$(RECS_LIB): $(RECS_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/bin/oneblog-events: $(RECS_LIB) $(PROTO_OBJ)

# oneblog-cms serve runs `events` and `recs` beside `cms` (cms/main.c).
$(B)/bin/oneblog-cms: $(RECS_LIB) $(EVENTS_LIB)
$(B)/obj/cms/main.o: CFLAGS += $(EVENTS_CFLAGS)

$(B)/bin/oneblog-recs: $(B)/obj/recs/main.o $(RECS_LIB) $(PROTO_OBJ) $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) $(RECS_HOST_LDFLAGS) -o $@ $< $(RECS_LINK) $(EVENTS_LIBS) $(CNODE_LIBS)

$(B)/tests/recs/%: $(B)/obj/tests/unit/recs/%.o $(RECS_LIB) $(PROTO_OBJ) $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(RECS_LINK) $(EVENTS_LIBS) $(CNODE_LIBS)

$(B)/bin/bench-recs: $(B)/obj/bench/recs.o $(RECS_LIB) $(PROTO_OBJ) $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(RECS_LINK) $(EVENTS_LIBS) $(CNODE_LIBS)

bench-events: $(if $(wildcard bench/recs.c),$(B)/bin/bench-recs)

# The `recs` server as hot-upgradable modules (cnode/code.h, docs/hot-upgrade.md):
# recs/server.c built as $(MOD_DIR)/recs-1.so (serves recs@1), recs-2.so (adds
# recs@2 for the A/B share, as the linked-in server) and recs-bad.so (a test
# build whose code_change fails). Each holds its own copy of the models, history,
# proto and common code; libcnode, libei and libevents come from the host.
RECS_HOST_LDFLAGS := -Wl,--dynamic-list=recs/module-host.list
RECS_MOD_SRC := $(filter-out recs/main.c recs/replay.c recs/server.c,$(wildcard recs/*.c)) \
                $(PROTO_SRC) $(COMMON_SRC)
RECS_MOD_AR  := $(B)/pic/librecs-module.a
RECS_MODULES := $(if $(wildcard recs/server.c),$(MOD_DIR)/recs-1.so $(MOD_DIR)/recs-2.so $(MOD_DIR)/recs-bad.so)
PIC_OBJ      += $(RECS_MOD_SRC:%.c=$(B)/pic/%.o) $(B)/pic/recs/server-1.o \
                $(B)/pic/recs/server-2.o $(B)/pic/recs/server-bad.o
$(B)/bin/oneblog-recs $(B)/bin/oneblog-cms: recs/module-host.list
$(B)/pic/recs/%.o: CFLAGS += $(EVENTS_CFLAGS) $(CMS_CFLAGS)
$(B)/pic/proto/%.o: CFLAGS += $(CMS_CFLAGS)
all: $(RECS_MODULES)

$(RECS_MOD_AR): $(RECS_MOD_SRC:%.c=$(B)/pic/%.o)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/pic/recs/server-1.o: MOD_DEFS := -DRECS_MODULE -DRECS_SERVER_VSN='"1"'
$(B)/pic/recs/server-2.o: MOD_DEFS := -DRECS_MODULE -DRECS_SERVER_VSN='"2"'
$(B)/pic/recs/server-bad.o: MOD_DEFS := -DRECS_MODULE -DRECS_SERVER_VSN='"2-bad"' -DRECS_BAD_CODE_CHANGE
$(B)/pic/recs/server-%.o: recs/server.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(pic) $< $(MOD_DEFS)")
	$(Q)$(CC) $(CFLAGS) $(PIC_CFLAGS) $(MOD_DEFS) -c -o $@ $<

$(MOD_DIR)/recs-%.so: $(B)/pic/recs/server-%.o $(RECS_MOD_AR)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) $(MODULE_LDFLAGS) -o $@ $< $(RECS_MOD_AR) -lbson-1.0 -ljansson -lcrypto -lz -lm

# end of recs/

# Objects depend on this file, which is rewritten only when the compiler or
# flags change: switching SANITIZE=address to SANITIZE=thread (both in
# build/san) or OPT rebuilds that variant instead of mixing objects.
FLAGS_STAMP := $(B)/obj/.flags
FLAGS_TEXT  := $(CC) $(CFLAGS) $(TEST_CFLAGS) $(LDFLAGS) $(CNODE_LIBS)
ifneq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
$(shell mkdir -p $(B)/obj && \
        printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' | cmp -s - $(FLAGS_STAMP) || \
        printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' > $(FLAGS_STAMP))
endif

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

.PHONY: all lib examples bench-bin tests
all: lib examples bench-bin tests
lib: $(LIB) $(COMMON_LIB)
examples: $(EXAMPLE_BIN)
bench-bin: $(BENCH_BIN)
tests: $(TEST_BIN) $(INTEG_C_BIN)

$(B)/obj/tests/unit/%.o: CFLAGS += $(TEST_CFLAGS)

$(B)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(B)/pic/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC(pic) $<")
	$(Q)$(CC) $(CFLAGS) $(PIC_CFLAGS) -c -o $@ $<

# Test modules of tests/unit/cnode/code_test.c: tests/unit/cnode/modules/NAME.c
# -> $(MOD_DIR)/test/NAME.so; code_test exports the runtime to them.
TEST_MOD_SRC := $(wildcard tests/unit/cnode/modules/*.c)
TEST_MODULES := $(TEST_MOD_SRC:tests/unit/cnode/modules/%.c=$(MOD_DIR)/test/%.so)
PIC_OBJ      += $(TEST_MOD_SRC:%.c=$(B)/pic/%.o)
tests: $(TEST_MODULES)
$(B)/pic/tests/unit/%.o: CFLAGS += $(TEST_CFLAGS)

$(MOD_DIR)/test/%.so: $(B)/pic/tests/unit/cnode/modules/%.o
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) $(MODULE_LDFLAGS) -o $@ $<

$(B)/tests/cnode/code_test: $(B)/obj/tests/unit/cnode/code_test.o $(LIB) cnode/module-host.list | $(TEST_MODULES)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) $(CNODE_HOST_LDFLAGS) -o $@ $< $(CNODE_LIBS)

# Rebuilt from scratch so objects of deleted sources do not linger; with no
# sources yet this is an empty, valid archive.
$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# client/: the reader-facing service. Its unit tests link all its objects but
# main.o, with proto/ (the RPC contract), common/ and libcnode.
CLIENT_SRC  := $(filter-out client/main.c,$(wildcard client/*.c))
CLIENT_OBJ  := $(CLIENT_SRC:%.c=$(B)/obj/%.o) $(PROTO_OBJ)
ALL_OBJ     += $(CLIENT_OBJ)

CLIENT_BIN  := $(if $(wildcard client/main.c),$(B)/bin/oneblog-client)
ALL_OBJ     += $(if $(CLIENT_BIN),$(B)/obj/client/main.o)
$(B)/obj/client/%.o: CFLAGS += -I. $(EVENTS_CFLAGS)

all: $(CLIENT_BIN)

$(B)/bin/oneblog-client: $(B)/obj/client/main.o $(CLIENT_OBJ) $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CLIENT_OBJ) $(EVENTS_LIBS) $(COMMON_LIBS) $(CNODE_LIBS) -lz

# The reader site against nginx serving the same HTML, cached and uncached
# (bench/web.sh); needs nginx and wrk.
.PHONY: bench-web
bench: bench-web
bench-web: $(CLIENT_BIN) $(CMS_BIN)
	$(Q)ONEBLOG_BUILD=$(B) bash bench/web.sh

# Tracing at 100% sampling against tracing off, in one run (bench/trace.sh): the
# cached page path (oneblog-client) and the RPC path (a libcnode node calling
# cms); ratio lines trace_cost_http_ratio, trace_cost_rpc_ratio. Needs wrk, node.
.PHONY: bench-trace
bench: bench-trace
bench-trace: $(CLIENT_BIN) $(CMS_BIN) $(B)/bin/test-otel_front $(B)/bin/bench-otlp_sink
	$(Q)ONEBLOG_BUILD=$(B) bash bench/trace.sh

$(B)/tests/client/%: $(B)/obj/tests/unit/client/%.o $(CLIENT_OBJ) $(EVENTS_LIB) $(COMMON_LIB) $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CLIENT_OBJ) $(EVENTS_LIBS) $(COMMON_LIBS) $(CNODE_LIBS) -lz

# ctl/: oneblog-ctl, the operator's CLI (a short-lived hidden node that calls
# the `canary` control server of every client node).
CTL_BIN     := $(if $(wildcard ctl/main.c),$(B)/bin/oneblog-ctl)
ALL_OBJ     += $(if $(CTL_BIN),$(B)/obj/ctl/main.o)
all: $(CTL_BIN)

$(B)/bin/oneblog-ctl: $(B)/obj/ctl/main.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CNODE_LIBS)

# Unit tests of common/ link the common library too.
$(B)/tests/common/%: $(B)/obj/tests/unit/common/%.o $(COMMON_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(COMMON_LIBS) -pthread -lm

# Fuzz targets of common/ (make fuzz) link the common library.
$(B)/obj/tests/fuzz/common_%.o: CFLAGS += -I.
$(B)/fuzz/common_%: $(B)/obj/tests/fuzz/common_%.o $(COMMON_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(COMMON_LIBS) -pthread -lm

$(B)/bin/cnode-%: $(B)/obj/examples/%.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CNODE_LIBS)

$(B)/bin/test-%: $(B)/obj/tests/integ/c/%.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CNODE_LIBS)

$(B)/bin/bench-%: $(B)/obj/bench/%.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CNODE_LIBS)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CNODE_LIBS)

$(FLAGS_STAMP): ;

# Objects come from chained pattern rules; keep them (make would delete
# them as intermediates, forcing a rebuild on every run).
.SECONDARY: $(ALL_OBJ) $(PIC_OBJ)

-include $(ALL_OBJ:.o=.d) $(PIC_OBJ:.o=.d)

# ---------------------------------------------------------------------------
# Dependencies, tests, running
# ---------------------------------------------------------------------------

.PHONY: deps test test-unit test-integ test-asan bench bench-runtime bench-http run clean

deps:
	$(Q)scripts/install-deps.sh

# deps first (it may install the compiler), then the build, then the tests:
# the build is a sub-make so that `make -j` cannot start it before deps.
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/run.sh $(B)

test-unit: deps
	$(Q)$(MAKE) --no-print-directory lib tests
	$(Q)TEST_ONLY=unit tests/run.sh $(B)

test-integ: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)TEST_ONLY=integ tests/run.sh $(B)

test-asan:
	$(Q)$(MAKE) --no-print-directory test SANITIZE=address,undefined

bench: bench-runtime

bench-runtime: bench-bin
	$(Q)if [ -f bench/runtime.sh ]; then \
	    BENCH_C_BIN=$(B)/bin/bench-runtime ONEBLOG_BUILD=$(B) bash bench/runtime.sh; \
	else \
	    echo "bench-runtime: bench/runtime.sh does not exist yet"; \
	fi

# cnode-static (one node) against nginx (one worker) with wrk, interleaved;
# needs nginx and wrk (scripts/install-deps.sh).
bench-http: examples
	$(Q)ONEBLOG_BUILD=$(B) bash bench/http.sh

# 20 nodes on 127.0.0.x: time to a full mesh with every service registered,
# by gossip and by DNS (bench/cluster.sh starts its own dnsmasq).
.PHONY: bench-cluster
bench: bench-cluster
bench-cluster: tests
	$(Q)ONEBLOG_BUILD=$(B) bash bench/cluster.sh

# The CMS read path against the databases straight (bench/cms.sh starts its own
# PostgreSQL); bench/cms.c links the CMS objects for the store API and its SQL.
$(B)/obj/bench/cms.o: CFLAGS += $(CMS_CFLAGS)
$(B)/bin/bench-cms: $(B)/obj/bench/cms.o $(CMS_LIBOBJ) $(LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(CMS_LIBOBJ) $(CMS_LIBS) $(CNODE_LIBS)

.PHONY: bench-cms
bench: bench-cms
bench-cms: $(B)/bin/bench-cms $(CMS_BIN)
	$(Q)ONEBLOG_BUILD=$(B) bash bench/cms.sh

# Remote gen_server calls with a 1 KiB reply: raw TCP, BEAM -> BEAM, libcnode ->
# libcnode and erl -> libcnode, interleaved (bench/rpc.sh); needs erl.
.PHONY: bench-rpc
bench: bench-rpc
bench-rpc: $(B)/bin/bench-rpc
	$(Q)ONEBLOG_BUILD=$(B) bash bench/rpc.sh

# A call to an active virtual process against the same call to a plain
# registered gen_server, local and remote, interleaved (bench/vproc.c).
.PHONY: bench-vproc
bench: bench-vproc
bench-vproc: $(B)/bin/bench-vproc
	$(Q)$(B)/bin/bench-vproc

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)if [ -f scripts/run.sh ]; then \
	    ONEBLOG_BUILD=$(B) bash scripts/run.sh $(B); \
	else \
	    echo "run: scripts/run.sh does not exist yet; binaries are in $(B)/bin"; \
	fi

# ---------------------------------------------------------------------------
# Releases: `make release` -> build/release/oneblog-VERSION-linux-ARCH.tar.gz
# (binaries, migrations, theme, demo, admin assets, docs, systemd units);
# `make install PREFIX=/opt/oneblog` installs the same tree (scripts/release.sh).
# ---------------------------------------------------------------------------

PREFIX ?= /usr/local
.PHONY: release install
release:
	$(Q)$(MAKE) --no-print-directory all VERSION=$(VERSION)
	$(Q)bash scripts/release.sh $(B) $(VERSION) build/release

install:
	$(Q)$(MAKE) --no-print-directory all VERSION=$(VERSION)
	$(Q)PREFIX_PATHS=$(PREFIX) bash scripts/release.sh --install $(B) $(VERSION) $(DESTDIR)$(PREFIX)

# ---------------------------------------------------------------------------
# Fuzzing (libFuzzer): tests/fuzz/NAME.c -> build/fuzz/fuzz/NAME; `make fuzz`
# runs each for FUZZ_SECONDS on its seeds (tests/fuzz/corpus/NAME/, read only;
# new inputs go to build/fuzz/corpus/NAME/, crashes to build/fuzz/).
# ---------------------------------------------------------------------------

FUZZ_SRC     := $(wildcard tests/fuzz/*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_SECONDS ?= 30
ALL_OBJ      += $(FUZZ_SRC:%.c=$(B)/obj/%.o)

.PHONY: fuzz fuzz-bin
fuzz-bin: $(FUZZ_BIN)

$(B)/obj/tests/fuzz/%.o: CFLAGS += -Icnode/src

$(B)/fuzz/%: $(B)/obj/tests/fuzz/%.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(CNODE_LIBS)

fuzz: deps
	$(Q)$(MAKE) --no-print-directory FUZZ=1 CC=clang fuzz-bin
	$(Q)for f in $(FUZZ_SRC:tests/fuzz/%.c=%); do \
	    mkdir -p build/fuzz/corpus/$$f; \
	    echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
	    build/fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/$$f- build/fuzz/corpus/$$f tests/fuzz/corpus/$$f \
	        >build/fuzz/$$f.log 2>&1; rc=$$?; \
	    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)|ERROR|SUMMARY' \
	        build/fuzz/$$f.log; \
	    [ $$rc -eq 0 ] || { echo "fuzz: $$f failed, see build/fuzz/$$f.log"; exit 1; }; \
	done

clean:
	rm -rf build
