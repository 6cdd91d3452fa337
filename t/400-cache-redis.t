# vi:filetype=perl
#
# cache_redis: a HIT answered from Redis through nginx's normal output
# filters (Age, HEAD, gzip, Range, If-None-Match), $cache_redis_status and
# $cache_redis_age, Cache-Status, bypass, no_store, max_size, methods,
# invalidation by an unsafe method, purge, temp-file buffers.
# Each block has its own key prefix; the origin is a location of the same
# server that tells its fetches apart by $request_id.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();

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
    $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]\n[error]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: MISS, then HIT with the same body, Age and $cache_redis_age
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_1:;
        add_header X-Cache "$cache_redis_status [$cache_redis_age]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["Content-Type: text/plain\n!Age", "Content-Type: text/plain\nCache-Control: max-age=60\nContent-Length: 8"]
--- response_headers_like eval
["X-Cache: MISS \\[\\]", "X-Cache: HIT \\[[0-3]\\]\nAge: [0-3]"]
--- response_body eval
["fetched\n", "fetched\n"]



=== TEST 2: a HIT never reaches the origin again
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_2:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header X-Fetch $request_id;
        return 200 "fetch $request_id\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT", "X-Cache: HIT"]
--- response_body_like eval
["^fetch [0-9a-f]{32}\n\$", "^fetch [0-9a-f]{32}\n\$", "^fetch [0-9a-f]{32}\n\$"]



=== TEST 3: HEAD is answered from GET's entry, without a body
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_3:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "HEAD /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT\nContent-Length: 8"]
--- response_body eval
["fetched\n", ""]



=== TEST 4: a HEAD miss is not stored (its answer has no body)
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_4:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["HEAD /t", "GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT"]
--- response_body eval
["", "fetched\n", "fetched\n"]



=== TEST 5: gzip on a HIT (the entry holds the identity body)
--- config
    gzip on;
    gzip_min_length 1;
    gzip_types text/plain;
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_5:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        gzip off;
        add_header Cache-Control "max-age=60";
        return 200 "fetched fetched fetched fetched fetched\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["", "Accept-Encoding: gzip", ""]
--- response_headers eval
["X-Cache: MISS\n!Content-Encoding", "X-Cache: HIT\nContent-Encoding: gzip", "X-Cache: HIT\n!Content-Encoding"]



=== TEST 6: Range on a HIT
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_6:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "0123456789\n";
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["", "Range: bytes=2-5"]
--- error_code eval
[200, 206]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT\nContent-Range: bytes 2-5/11"]
--- response_body eval
["0123456789\n", "2345"]



=== TEST 7: If-None-Match on a HIT answers 304
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_7:;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header ETag '"v1"';
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["", "If-None-Match: \"v1\"", "If-None-Match: \"v2\""]
--- error_code eval
[200, 304, 200]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT\nETag: \"v1\"", "X-Cache: HIT\nETag: \"v1\""]



=== TEST 8: Age counts the upstream's Age; $cache_redis_age the time in the cache
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_8:;
        add_header X-Cache "$cache_redis_status [$cache_redis_age]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Age 30;
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
["X-Cache: MISS \\[\\]", "X-Cache: HIT \\[[0-3]\\]\nAge: 3[0-3]"]



=== TEST 9: a location without cache_redis: no status, nothing stored
--- config
    location /t {
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: []", "X-Cache: []"]



=== TEST 10: cache_redis_bypass: not taken from the cache, but stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_10:;
        cache_redis_bypass $arg_fresh;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched $arg_v\n";
    }
--- request eval
["GET /t?v=1", "GET /t?v=2&fresh=1", "GET /t?v=3"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: BYPASS", "X-Cache: HIT"]
--- response_body eval
["fetched 1\n", "fetched 2\n", "fetched 2\n"]



=== TEST 11: cache_redis_no_store: answered, not stored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_11:;
        cache_redis_no_store $arg_nostore;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched $arg_v\n";
    }
--- request eval
["GET /t?v=1&nostore=1", "GET /t?v=2", "GET /t?v=3"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT"]
--- response_body eval
["fetched 1\n", "fetched 2\n", "fetched 2\n"]



=== TEST 12: cache_redis_max_size: a larger response passes, unstored
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_12:;
        cache_redis_max_size 16;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched, a body longer than sixteen bytes\n";
    }
    location /o/t/small {
        add_header Cache-Control "max-age=60";
        return 200 "small\n";
    }
--- request eval
["GET /t/big", "GET /t/big", "GET /t/small", "GET /t/small"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: MISS", "X-Cache: MISS", "X-Cache: HIT"]



=== TEST 13: a body the proxy buffered to temp files is stored whole
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_13:;
        add_header X-Cache $cache_redis_status always;
        proxy_buffers 2 1k;
        proxy_buffer_size 1k;
        proxy_busy_buffers_size 1k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        root html;
        add_header Cache-Control "max-age=60";
        try_files /big.txt =404;
    }
--- user_files eval
">>> big.txt\n" . ("0123456789abcdef" x 4096)
--- request eval
["GET /t", "GET /t"]
--- response_headers eval
["X-Cache: MISS\nContent-Length: 65536", "X-Cache: HIT\nContent-Length: 65536"]
--- response_body eval
[("0123456789abcdef" x 4096), ("0123456789abcdef" x 4096)]



=== TEST 14: POST, PUT, DELETE answered 2xx invalidate the URL's entry
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_14:;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t", "POST /t\nhello", "GET /t", "GET /t", "DELETE /t", "GET /t"]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: [HIT]", "X-Cache: []", "X-Cache: [MISS]", "X-Cache: [HIT]", "X-Cache: []", "X-Cache: [MISS]"]



=== TEST 15: a POST answered 4xx invalidates nothing
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_15:;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        if ($request_method = POST) {
            return 403;
        }
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "POST /t\nhello", "GET /t"]
--- error_code eval
[200, 403, 200]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: []", "X-Cache: [HIT]"]



=== TEST 16: a POST invalidates the Content-Location it answers with
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_16:;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header Content-Location /t/item;
        if ($request_method = POST) {
            return 201 "created\n";
        }
        return 200 "fetched\n";
    }
--- request eval
["GET /t/item", "GET /t/item", "POST /t\nhello", "GET /t/item"]
--- error_code eval
[200, 200, 201, 200]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: [HIT]", "X-Cache: []", "X-Cache: [MISS]"]



=== TEST 17: cache_redis_header: Cache-Status (RFC 9211)
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_17:;
        cache_redis_header on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
["Cache-Status: cache_redis; fwd=uri-miss", "Cache-Status: cache_redis; hit; ttl=(60|59|58|57)"]



=== TEST 18: PURGE of a key
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_18:;
        cache_redis_purge;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "GET /t", "PURGE /t", "PURGE /t", "GET /t"]
--- error_code eval
[200, 200, 200, 404, 200]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: [HIT]", "Content-Type: application/json", "", "X-Cache: [MISS]"]
--- response_body eval
["fetched\n", "fetched\n", "{\"purged\":1}\n", "{\"purged\":0}\n", "fetched\n"]



=== TEST 19: cache_redis_tags and PURGE with Cache-Tag
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_19:;
        cache_redis_tags $upstream_http_x_tags;
        cache_redis_purge;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o$uri$is_args$args;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        add_header X-Tags "all $arg_tag";
        return 200 "fetched\n";
    }
--- request eval
["GET /t/a?tag=red", "GET /t/b?tag=blue", "GET /t/c?tag=red",
 "GET /t/a?tag=red", "GET /t/b?tag=blue", "GET /t/c?tag=red",
 "PURGE /t/any", "GET /t/a?tag=red", "GET /t/b?tag=blue", "GET /t/c?tag=red"]
--- more_headers eval
["", "", "", "", "", "", "Cache-Tag: red", "", "", ""]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: [MISS]", "X-Cache: [MISS]",
 "X-Cache: [HIT]", "X-Cache: [HIT]", "X-Cache: [HIT]",
 "", "X-Cache: [MISS]", "X-Cache: [HIT]", "X-Cache: [MISS]"]
--- response_body eval
["fetched\n", "fetched\n", "fetched\n", "fetched\n", "fetched\n", "fetched\n",
 "{\"purged\":2}\n", "fetched\n", "fetched\n", "fetched\n"]



=== TEST 20: cache_redis_methods GET: HEAD is not looked up
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_20:;
        cache_redis_methods GET;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "fetched\n";
    }
--- request eval
["GET /t", "HEAD /t", "GET /t"]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: []", "X-Cache: [HIT]"]



=== TEST 21: a cached 404 (cache_redis_valid 404) is answered as 404
--- config
    location /t {
        cache_redis main;
        cache_redis_key_prefix t400_21:;
        cache_redis_valid 404 1m;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
    location /o {
        return 404;
    }
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[404, 404]
--- response_headers eval
["X-Cache: [MISS]", "X-Cache: [HIT]"]
