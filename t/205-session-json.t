# vi:filetype=perl
#
# session_redis and the stored session, read as JSON.parse reads it:
# nesting of any depth, numbers past 2^63 and 1e308, \u0000 and lone
# surrogates; values rendered as JavaScript renders them (numbers as
# String() writes them, not as C's printf); what cannot be decoded is
# ERROR, with its own log line.  (The same against the real app: t/253.)

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
log_level('info');

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, '-x', @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    return $out;
}

sub store {
    my ($key, $value) = @_;
    open(my $fh, '|-', 'redis-cli', '-p', $RedisPort, '-x', 'set', $key)
        or die "redis-cli: $!";
    print $fh $value;
    close $fh;
}

our $Cookie = '"cookie":{"originalMaxAge":3600000,'
    . '"expires":"2099-01-01T00:00:00.000Z","httpOnly":true,"path":"/"}';

store('t205:deep', '{' . $Cookie . ',"user":{"id":"alice"},"flash":'
      . ('[' x 100000) . (']' x 100000) . '}');
store('t205:numbers', '{' . $Cookie . ',"n":[1.5e-7,0.00001,1e21,'
      . '0.1,1.2345678901234568e+20,1e-7,-0,3.0,2.5e-5]}');
store('t205:odd', '{' . $Cookie . ',"user":{"id":"alice","name":"Al\ud83dce",'
      . '"nul":"a\u0000b"},"big":18446744073709551616,"huge":1e400,'
      . '"\u0075ser2":{"id":"bob"},"user2":{"id":"carol"}}');
store('t205:large', '{' . $Cookie . ',"user":{"id":"alice","roles":['
      . join(',', map { "\"role$_\"" } 1 .. 600) . ']}}');
store('t205:broken', '{' . $Cookie . ',"user":{"id":"alice"}');
store('t205:array', '[{' . $Cookie . '}]');

run_tests();

__DATA__

=== TEST 1: nesting 100000 deep is VALID (jansson stopped at 2048)
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_set $uid user.id;
        add_header X-S "$session_redis_status [$uid]" always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=deep
--- error_code: 200
--- response_headers
X-S: VALID [alice]
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 2: numbers as JavaScript writes them
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_set $n0 n.0;
        session_redis_set $n1 n.1;
        session_redis_set $n2 n.2;
        session_redis_set $n3 n.3;
        session_redis_set $n4 n.4;
        session_redis_set $n5 n.5;
        session_redis_set $n6 n.6;
        session_redis_set $n7 n.7;
        session_redis_set $n8 n.8;
        session_redis_set $n n;
        add_header X-N "$n0 $n1 $n2 $n3 $n4 $n5 $n6 $n7 $n8" always;
        add_header X-A "$n" always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=numbers
--- error_code: 200
--- response_headers
X-N: 1.5e-7 0.00001 1e+21 0.1 123456789012345680000 1e-7 0 3 0.000025
X-A: [1.5e-7,0.00001,1e+21,0.1,123456789012345680000,1e-7,0,3,0.000025]
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 3: lone surrogates, \u0000, 2^64 and 1e400: VALID, as express reads them
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_set $uid user.id;
        session_redis_set $name user.name;
        session_redis_set $nul user.nul;
        session_redis_set $big big;
        session_redis_set $huge huge;
        session_redis_set $uid2 user2.id;
        add_header X-S "$session_redis_status [$uid] [$nul] [$big] [$huge] [$uid2]" always;
        add_header X-Name "$name" always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=odd
--- error_code: 200
--- response_headers eval
"X-S: VALID [alice] [] [18446744073709552000] [Infinity] [carol]
X-Name: Al\xef\xbf\xbdce"
--- error_log
a session value holds control characters, not used
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 4: an object larger than 4 KiB is not used, and said so
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_set $uid user.id;
        session_redis_set $roles user.roles;
        session_redis_set $role user.roles.599;
        add_header X-S "$session_redis_status [$uid] [$roles] [$role]" always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=large
--- error_code: 200
--- response_headers
X-S: VALID [alice] [] [role600]
--- error_log
a session value is larger than 4096 bytes or deeper than 64 levels, not used
--- no_error_log
[alert]
[emerg]
[error]



=== TEST 5: a session that cannot be decoded: ERROR, its own line, 503
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        add_header X-S $session_redis_status always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=broken
--- error_code: 503
--- response_headers
X-S: ERROR
--- error_log
session in redis pool "main" cannot be decoded: expected ',' or '}' at byte
--- no_error_log
[alert]
[emerg]
is not a JSON object



=== TEST 6: not a session object: ERROR; fail_open on treats it as no session
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_fail_open on;
        add_header X-S $session_redis_status always;
        empty_gif;
    }
--- request
GET /t
--- more_headers
Cookie: sid=array
--- error_code: 401
--- response_headers
X-S: ERROR
--- error_log
session in redis pool "main" is not a session: not an object
--- no_error_log
[alert]
[emerg]



=== TEST 7: counted as result="error"
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t205:;
        session_redis_fail_open on;
        empty_gif;
    }
    location = /metrics {
        health_metrics;
    }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Cookie: sid=array", "Cookie: sid=broken", ""]
--- error_code eval
[401, 401, 200]
--- response_body_like eval
[qr/401/, qr/401/, qr/nginx_session_redis_requests_total\{result="error"\} 2\n/]
--- no_error_log
[alert]
[emerg]
