# vi:filetype=perl
#
# cache_redis behind session_redis: the default key holds the validated
# session id, so each user has their own entries; requests without a VALID
# session share the anonymous entry; when session_redis could not check
# (ERROR) nothing is stored; an explicit cache_redis_key is shared.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    return $out;
}

redis('set', 't404s:alice1', '{"user":{"id":"alice"}}');
redis('set', 't404s:bob1', '{"user":{"id":"bob"}}');

our $HttpConfig = <<'_EOC_';
    redis_pool main {
        server 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        timeout 1s;
    }
    redis_pool down {
        server 127.0.0.1:1;
        timeout 100ms;
        connect_timeout 100ms;
    }
_EOC_

our $Origin = <<'_EOC_';
    location /o {
        add_header Cache-Control "max-age=60";
        return 200 "for $http_x_user\n";
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $HttpConfig)
        unless defined $block->http_config;
    $block->set_value("config", $block->config . $Origin);
    $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: one entry per user; no VALID session: the shared anonymous entry
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t404s:;
        session_redis_required off;
        session_redis_set $user_id user.id;
        proxy_set_header X-User $user_id;
        cache_redis main;
        cache_redis_key_prefix t404_1:;
        add_header X-Cache "$cache_redis_status $session_redis_status" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["Cookie: sid=alice1", "Cookie: sid=alice1", "Cookie: sid=bob1", "Cookie: sid=nosuch", "", "Cookie: sid=bob1"]
--- response_headers eval
["X-Cache: MISS VALID", "X-Cache: HIT VALID", "X-Cache: MISS VALID", "X-Cache: MISS MISSING", "X-Cache: HIT MISSING", "X-Cache: HIT VALID"]
--- response_body eval
["for alice\n", "for alice\n", "for bob\n", "for \n", "for \n", "for bob\n"]



=== TEST 2: session_redis could not check (ERROR): looked up, not stored
--- config
    location /t {
        session_redis down;
        session_redis_required off;
        session_redis_fail_open on;
        cache_redis main;
        cache_redis_key_prefix t404_2:;
        add_header X-Cache "$cache_redis_status $session_redis_status" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
--- more_headers
Cookie: sid=alice1
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
["X-Cache: (MISS|ERROR) ERROR", "X-Cache: (MISS|ERROR) ERROR"]



=== TEST 3: an explicit cache_redis_key is shared by every user
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t404s:;
        session_redis_set $user_id user.id;
        proxy_set_header X-User $user_id;
        cache_redis main;
        cache_redis_key_prefix t404_3:;
        cache_redis_key $uri;
        add_header X-Cache $cache_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["Cookie: sid=alice1", "Cookie: sid=bob1"]
--- response_headers eval
["X-Cache: MISS", "X-Cache: HIT"]
--- response_body eval
["for alice\n", "for alice\n"]



=== TEST 4: no session and session_redis_required: 401 before any lookup
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t404s:;
        cache_redis main;
        cache_redis_key_prefix t404_4:;
        add_header X-Cache "[$cache_redis_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/o;
    }
--- request
GET /t
--- error_code: 401
--- response_headers
X-Cache: []
