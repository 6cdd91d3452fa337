# vi:filetype=perl
#
# cache_redis and RFC 9111 for a shared cache: what is stored, for how
# long (s-maxage, max-age, Expires, X-Accel-Expires, cache_redis_valid,
# heuristic), Vary variants, and values under a key that are not entries.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level("warn");

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    return $out;
}

redis('set', 't401_30:/t', 'not a cache entry');
redis('set', 't401_31:/t', "NXC\x01E\x00\xc8truncated");
redis('hset', 't401_32:/t', 'a', 'b');

our $HttpConfig = <<'_EOC_';
    redis_pool main {
        server 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        timeout 1s;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $HttpConfig)
        unless defined $block->http_config;
    $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: Cache-Control: no-store is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_1:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60, no-store";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 2: Cache-Control: private is not stored by a shared cache
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_2:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "private, max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 3: Cache-Control: no-cache is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_3:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "no-cache, max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 4: a response with Set-Cookie is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_4:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Set-Cookie "sid=abc";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 5: Vary: * is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_5:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Vary "Accept, *";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 6: a request with Authorization: not stored unless public
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_6:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
    location /o/t/public {
        add_header Cache-Control "public, max-age=60";
        return 200 "fetched\n";
    }
    location /o/t/shared {
        add_header Cache-Control "s-maxage=60";
        return 200 "fetched\n";
    }
--- more_headers
Authorization: Basic YWxpY2U6c2VjcmV0
--- request eval
["GET /t/private", "GET /t/private", "GET /t/public", "GET /t/public", "GET /t/shared", "GET /t/shared"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: HIT"]



=== TEST 7: s-maxage wins over max-age for a shared cache
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_7:;
        cache_redis_header on;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=0, s-maxage=120";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
["X-Cache: MISS", "X-Cache: HIT\nCache-Status: cache_redis; hit; ttl=1(20|19|18|17)"]



=== TEST 8: max-age=0 is stale at once: not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_8:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=0";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS"]



=== TEST 9: Expires: a future date is a lifetime, a past or invalid one is not
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_9:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o/t/future {
        expires 1h;
        return 200 "fetched\n";
    }
    location /o/t/past {
        add_header Expires "Thu, 01 Jan 1970 00:00:01 GMT";
        return 200 "fetched\n";
    }
    location /o/t/invalid {
        add_header Expires "0";
        return 200 "fetched\n";
    }
--- request eval
["GET /t/future", "GET /t/future", "GET /t/past", "GET /t/past", "GET /t/invalid", "GET /t/invalid"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS"]



=== TEST 10: X-Accel-Expires decides before Cache-Control; 0 is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_10:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o/t/long {
        add_header X-Accel-Expires 60;
        add_header Cache-Control "max-age=0";
        return 200 "fetched\n";
    }
    location /o/t/zero {
        add_header X-Accel-Expires 0;
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t/long", "GET /t/long", "GET /t/zero", "GET /t/zero"]
--- response_headers eval
["X-Cache: MISS\n!X-Accel-Expires", "X-Cache: HIT\n!X-Accel-Expires", "X-Cache: MISS", "X-Cache: MISS"]



=== TEST 11: no freshness information: only cache_redis_valid makes it storable
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_11:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /t/valid {
        cache_redis main;
        cache_redis_key_prefix t401_11:;
        cache_redis_valid 200 1m;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /t/valid404 {
        cache_redis main;
        cache_redis_key_prefix t401_11:;
        cache_redis_valid 404 1m;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o {
        return 200 "fetched\n";
    }
--- request eval
["GET /t/plain", "GET /t/plain", "GET /t/valid", "GET /t/valid", "GET /t/valid404", "GET /t/valid404"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: MISS"]



=== TEST 12: heuristic freshness from Last-Modified (RFC 9111 4.2.2)
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_12:;
        cache_redis_header on;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o {
        add_header Last-Modified "Thu, 01 Jan 1970 00:00:01 GMT";
        return 200 "fetched\n";
    }
    location /o/t/nolm {
        return 200 "fetched\n";
    }
    location /o/t/302 {
        add_header Last-Modified "Thu, 01 Jan 1970 00:00:01 GMT" always;
        return 302 /elsewhere;
    }
--- request eval
["GET /t/lm", "GET /t/lm", "GET /t/nolm", "GET /t/nolm", "GET /t/302", "GET /t/302"]
--- error_code eval
[200, 200, 200, 200, 302, 302]
--- response_headers_like eval
["X-Cache: MISS", "X-Cache: HIT\nCache-Status: cache_redis; hit; ttl=86(400|399|398|397)", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS"]



=== TEST 13: a request with Cache-Control: no-store is not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_13:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["Cache-Control: no-store", "", ""]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT"]



=== TEST 14: Vary: Accept-Encoding makes one entry per variant
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_14:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Vary "Accept-Encoding";
        return 200 "for [$http_accept_encoding]\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["Accept-Encoding: gzip", "Accept-Encoding: gzip", "Accept-Encoding: br", "Accept-Encoding: br", "", "Accept-Encoding: gzip"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS", "X-Cache: HIT"]
--- response_body eval
["for [gzip]\n", "for [gzip]\n", "for [br]\n", "for [br]\n", "for []\n", "for [gzip]\n"]



=== TEST 15: Vary on two headers: Accept-Language and Accept
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_15:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Vary "Accept-Language, accept";
        return 200 "for [$http_accept_language] [$http_accept]\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["Accept-Language: de\nAccept: text/html", "Accept-Language: fr\nAccept: text/html", "Accept-Language: de\nAccept: text/html", "Accept-Language: fr\nAccept: text/html"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT", "X-Cache: HIT"]
--- response_body eval
["for [de] [text/html]\n", "for [fr] [text/html]\n", "for [de] [text/html]\n", "for [fr] [text/html]\n"]



=== TEST 16: a value that is not a cache entry is a MISS, stored over
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_30:;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT"]



=== TEST 17: a truncated entry is a MISS
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_31:;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT"]



=== TEST 18: a key of another type (WRONGTYPE): ERROR, the app answers
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t401_32:;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Cache: ERROR", "X-Cache: ERROR"]
--- response_body eval
["fetched\n", "fetched\n"]



=== TEST 19: Redis unreachable: ERROR, the app answers, never a 5xx
--- http_config
    redis_pool down {
        server 127.0.0.1:1;
        timeout 100ms;
        connect_timeout 100ms;
    }
--- config
    location /t {
        cache_redis down;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t", "POST /t\nx"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-Cache: ERROR", "X-Cache: ERROR", ""]
--- response_body eval
["fetched\n", "fetched\n", "fetched\n"]
