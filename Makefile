# kvmbox build. `make` builds build/kvmbox; `make check` runs every test and
# ends with "N passed, N failed[, N skipped]". Sources are found by wildcard:
# a new src/**/*.c or tests/unit/test_*.c needs no edit here.
CC      ?= cc
PREFIX  ?= /usr/local
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror \
                -Wno-unused-parameter -Wshadow -Wstrict-prototypes \
                -Wmissing-prototypes -Isrc -MMD -MP
CFLAGS  ?= -O2
SAN_FLAGS = -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
            -fno-sanitize-recover=undefined
LDLIBS  = -lpthread -luring -lz -lzstd

SRCS      := $(shell find src -name '*.c' | sort)
MAINS     := src/main.c src/img/main.c
LIB_SRCS  := $(filter-out $(MAINS),$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

OBJS      := $(LIB_SRCS:%.c=build/obj/%.o)
SAN_OBJS  := $(LIB_SRCS:%.c=build/san/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/unit/%)

.PHONY: all check check-unit check-kvm check-linux install clean guest bench fuzz

all: build/kvmbox build/kvmbox-san $(if $(wildcard src/img/main.c),build/kvmbox-img build/kvmbox-img-san)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -c $< -o $@

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(SAN_FLAGS) -c $< -o $@

build/libkvmbox.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

build/libkvmbox-san.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/kvmbox: build/obj/src/main.o build/libkvmbox.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The sanitizer build of the VMM: the KVM integration tests run it.
build/kvmbox-san: build/san/src/main.o build/libkvmbox-san.a
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

# kvmbox-img: qemu-img's verbs for kvmbox's image formats.
build/kvmbox-img: build/obj/src/img/main.o build/libkvmbox.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/kvmbox-img-san: build/san/src/img/main.o build/libkvmbox-san.a
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

# Unit tests always build with ASan+UBSan.
build/unit/%: tests/unit/%.c tests/unit/test.h build/libkvmbox-san.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(SAN_FLAGS) -Itests/unit -o $@ $< build/libkvmbox-san.a $(LDLIBS)

guest:
	$(MAKE) -C tests/guest

check: all $(UNIT_BINS) guest
	tests/run.sh all

check-unit: $(UNIT_BINS)
	tests/run.sh unit

check-kvm: all guest
	tests/run.sh kvm

check-linux: all
	tests/run.sh linux

fuzz:
	tests/run.sh fuzz

bench: build/kvmbox
	bench/run.sh

install: all
	install -D -m 755 build/kvmbox $(DESTDIR)$(PREFIX)/bin/kvmbox
	if [ -f build/kvmbox-img ]; then install -D -m 755 build/kvmbox-img $(DESTDIR)$(PREFIX)/bin/kvmbox-img; fi

clean:
	rm -rf build
	$(MAKE) -C tests/guest clean

-include $(shell find build -name '*.d' 2>/dev/null)
