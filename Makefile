# nginx-scale.  The two commands a newcomer needs:
#   make demo    build, start Redis + 3 apps + 2 nginx + HAProxy, prove the KPIs
#   make test    build, start a private Redis, run the t/ suite
#
# make                         builds build/modules/ngx_http_scale_module.so
#                              against Debian's nginx (nginx-dev)
# make NGINX_SRC=/path/nginx   builds against any nginx source tree (--with-compat)
# make deb                     builds the Debian package libnginx-mod-http-scale
#                              into build/ (dpkg-buildpackage, then lintian)

BUILD     ?= $(CURDIR)/build
FUZZ_SECONDS ?= 600
NGINX_SRC ?=
NGINX_BIN ?= /usr/sbin/nginx
SO        := $(BUILD)/modules/ngx_http_scale_module.so
SRCS      := config $(wildcard *.c *.h src/*.c src/*.h)

.PHONY: all deps test test-valgrind demo up down bench fuzz deb clean

all: $(SO)

deps:
	@scripts/deps.sh build

$(SO): $(SRCS)
	@scripts/deps.sh build
	NGINX_SRC="$(NGINX_SRC)" BUILD="$(BUILD)" scripts/build.sh

test: $(SO)
	@scripts/deps.sh test
	NGINX_BIN="$(NGINX_BIN)" SO="$(SO)" scripts/test.sh $(T)

test-valgrind: $(SO)
	@scripts/deps.sh test valgrind
	TEST_NGINX_USE_VALGRIND=1 NGINX_BIN="$(NGINX_BIN)" SO="$(SO)" scripts/test.sh $(T)

demo: $(SO)
	@scripts/deps.sh demo
	SO="$(SO)" NGINX_BIN="$(NGINX_BIN)" examples/demo/run

up: $(SO)
	@scripts/deps.sh demo
	SO="$(SO)" NGINX_BIN="$(NGINX_BIN)" examples/demo/run --up

down:
	examples/demo/run --down

bench: $(SO)
	@scripts/deps.sh bench
	bench/ratelimit
	bench/session
	bench/metrics
	bench/cache

# dpkg-buildpackage writes next to the source tree, so it runs on a copy in
# build/deb/ (the work tree stays clean) and the results move to build/.
# The sources come from `config`, read by nginx's configure.
deb:
	@scripts/deps.sh build deb
	rm -rf $(BUILD)/deb $(BUILD)/*.deb $(BUILD)/*.buildinfo $(BUILD)/*.changes
	mkdir -p $(BUILD)/deb/nginx-scale
	tar -C $(CURDIR) --exclude=./build --exclude=./.git --exclude=node_modules \
	    -cf - . | tar -C $(BUILD)/deb/nginx-scale -xf -
	cd $(BUILD)/deb/nginx-scale && dpkg-buildpackage -us -uc -b \
	    >$(BUILD)/deb/build.log 2>&1 \
	    || { tail -30 $(BUILD)/deb/build.log; exit 1; }
	mv $(BUILD)/deb/*.deb $(BUILD)/deb/*.buildinfo $(BUILD)/deb/*.changes $(BUILD)/
	lintian --allow-root --fail-on error,warning $(BUILD)/nginx-scale_*.changes
	@ls -l $(BUILD)/*.deb

fuzz:
	@scripts/deps.sh build fuzz
	BUILD="$(BUILD)" fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
