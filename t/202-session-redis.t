# vi:filetype=perl
#
# session_redis and what Redis holds: cookie.expires (Redis's TTL decides),
# session_redis_touch, values that are not sessions, and Redis failures
# with fail_open off/on.

use Test::Nginx::Socket 'no_plan';
use FindBin;
use IO::Socket::INET;
require "$FindBin::Bin/helpers/blocks.pl";

repeat_each(1);
no_shuffle();
log_level('info');

our $HttpConfig = <<'_EOC_';
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
_EOC_

block_defaults(http_config  => $HttpConfig,
               no_error_log => "[alert]\n[emerg]\n[error]");

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    chomp $out;
    return $out;
}

sub session {
    my ($expires) = @_;
    return '{"cookie":{"originalMaxAge":3600000,"expires":' . $expires
        . ',"httpOnly":true,"path":"/"},"user":{"id":"alice"}}';
}

# a Redis that accepts connections and never answers
our $Silent = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                    LocalPort => 0, Proto => 'tcp',
                                    ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $Silent->sockport;

redis('set', 't202_1:abc', session('"2020-01-01T00:00:00.000Z"'));
redis('set', 't202_2:abc', session('"2020-01-01T00:00:00.000Z"'));
redis('set', 't202_3:a', session('null'));
redis('set', 't202_3:b', session('"2036-11-27T01:57:37.589Z"'));
redis('set', 't202_3:c', session('"2036-11-27T01:57:37+02:00"'));
redis('set', 't202_3:d', session('"next tuesday"'));
redis('set', 't202_3:e', session('1700000000000'));
redis('set', 't202_3:f', '{"cookie":{},"user":{"id":"no expires"}}');
redis('set', 't202_3:g', session('"2020-01-01T00:00:00+02:00"'));
redis('set', 't202_3:h', session('"2000-02-29T12:00:00Z"'));
redis('set', 't202_4:abc', session('null'), 'px', '120000');   # touch sets 1h
redis('set', 't202_5:abc', session('null'), 'px', '60000');
redis('set', 't202_7:notjson', 'this is not JSON {');
redis('set', 't202_7:array', '["an","array"]');
redis('set', 't202_7:string', '"just a string"');
redis('set', 't202_7:trunc', '{"cookie":{"expires":');
redis('set', 't202_7:empty', '');
redis('set', 't202_7:deep', ('[' x 5000) . (']' x 5000));
redis('hset', 't202_8:abc', 'cookie', '{}');
redis('hset', 't202_9:abc', 'cookie', '{}');
redis('set', 't202_18:bare', '{"user":{"id":"bob"}}');
redis('set', 't202_18:array', '["an","array"]');
redis('set', 't202_16:abc', '{"cookie":{},"user":{"id":"eve","name":"Eve\r\nX-Admin: 1"}}');

run_tests();

__DATA__

=== TEST 1: VALID: cookie.expires in the past while Redis has the key (rolling)
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_1:;
        session_redis_set $user_id user.id;
        add_header X-Session "$session_redis_status [$user_id]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_headers
X-Session: VALID [alice]



=== TEST 2: a past cookie.expires with required off: the session's variables
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_2:;
        session_redis_required off;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session [$http_x_user_id]\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
X-User-Id: mallory
--- error_code: 200
--- response_body
VALID [alice]



=== TEST 3: cookie.expires: null, future, offsets, unparsable, absent
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_3:;
        session_redis_required off;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session\n";
    }
--- pipelined_requests eval
[("GET /t") x 8]
--- more_headers eval
[map { "Cookie: sid=$_" } qw(a b c d e f g h)]
--- response_body eval
[("VALID\n") x 8]



=== TEST 4: session_redis_touch: the TTL is refreshed in the same round trip
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_4:;
        session_redis_touch 1h;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_headers
X-Session: VALID



=== TEST 5: TTL after TEST 4; without touch the TTL is left alone
--- init
my $ttl = main::redis('pttl', 't202_4:abc');
Test::More::cmp_ok($ttl, '>', 3_500_000, "TEST 4 refreshed the TTL to 1h ($ttl)");
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_5:;
        session_redis_touch off;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_headers
X-Session: VALID



=== TEST 6: touch on a missing session creates nothing
--- init
my $ttl = main::redis('pttl', 't202_5:abc');
Test::More::cmp_ok($ttl, '<=', 60_000, "TEST 5 left the TTL alone ($ttl)");
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_6:;
        session_redis_touch 30m;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 401
--- response_headers
X-Session: MISSING



=== TEST 7: values that are not sessions are ERROR, an empty one MISSING
--- init
my $n = main::redis('exists', 't202_6:abc');
Test::More::is($n, 0, "TEST 6 created no key");
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_7:;
        session_redis_required off;
        session_redis_fail_open on;
        session_redis_set $user_id user.id;
        proxy_set_header X-Session $session_redis_status;
        proxy_set_header X-User-Id $user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session [$http_x_user_id]\n";
    }
--- pipelined_requests eval
[("GET /t") x 6]
--- more_headers eval
[map { "Cookie: sid=$_" } qw(notjson array string trunc empty deep)]
--- response_body eval
["ERROR []\n", "ERROR []\n", "ERROR []\n", "ERROR []\n", "MISSING []\n",
 "ERROR []\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 8: a value that cannot be decoded is logged, 503 with fail_open off
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_7:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=notjson
--- error_code: 503
--- response_headers
X-Session: ERROR
--- error_log
session in redis pool "main" cannot be decoded: unexpected character at byte 0
--- no_error_log
[alert]
[emerg]



=== TEST 9: a hash instead of a string (WRONGTYPE) is ERROR: 503
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_8:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 503
--- response_headers
X-Session: ERROR
--- error_log
WRONGTYPE
--- no_error_log
[alert]
[emerg]



=== TEST 10: WRONGTYPE through the touch script, fail_open on: no session, 401
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_9:;
        session_redis_touch 1h;
        session_redis_fail_open on;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 401
--- response_headers
X-Session: ERROR
--- error_log
WRONGTYPE
--- no_error_log
[alert]
[emerg]



=== TEST 11: Redis unreachable, fail_open off: 503
--- http_config
    redis_pool down { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location /t {
        session_redis down;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 503
--- response_headers
X-Session: ERROR
--- no_error_log
[alert]
[emerg]



=== TEST 12: Redis unreachable, fail_open on, required on: no session, 401
--- http_config
    redis_pool down { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location /t {
        session_redis down;
        session_redis_fail_open on;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 401
--- response_headers
X-Session: ERROR
--- no_error_log
[alert]
[emerg]



=== TEST 13: Redis unreachable, fail_open on, required off: passes as ERROR
--- http_config
    redis_pool down { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location /t {
        session_redis down;
        session_redis_fail_open on;
        session_redis_required off;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session [$http_x_user_id]\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
X-User-Id: mallory
--- error_code: 200
--- response_body
ERROR []
--- no_error_log
[alert]
[emerg]



=== TEST 14: Redis unreachable: no cookie is MISSING without asking Redis
--- http_config
    redis_pool down { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location /t {
        session_redis down;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- error_code: 401
--- response_headers
X-Session: MISSING
--- no_error_log
[alert]
[emerg]



=== TEST 15: Redis that never answers: ERROR after the pool timeout, 503
--- http_config
    redis_pool silent {
        server 127.0.0.1:$TEST_NGINX_SILENT_PORT;
        connect_timeout 100ms;
        timeout 100ms;
    }
--- config
    location /t {
        session_redis silent;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 503
--- response_headers
X-Session: ERROR
--- timeout: 5
--- no_error_log
[alert]
[emerg]



=== TEST 16: a session string with CR LF never becomes a header
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t202_16:;
        session_redis_set $user_id user.id;
        session_redis_set $user_name user.name;
        proxy_set_header X-User-Id $user_id;
        proxy_set_header X-User-Name $user_name;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "id=$http_x_user_id name=[$http_x_user_name] admin=[$http_x_admin]\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_body
id=eve name=[] admin=[]
--- error_log
a session value holds control characters, not used
--- no_error_log
[alert]
[emerg]



=== TEST 17: try_files into a protected location: that location's rules apply
--- config
    session_redis main;
    session_redis_key_prefix t202_17:;
    add_header X-Session $session_redis_status always;
    location /static/ {
        session_redis_required off;
        try_files $uri /app/index;
    }
    location /app/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        session_redis off;
        return 200 "reached app\n";
    }
--- request
GET /static/nonexistent
--- error_code: 401
--- response_headers
X-Session: MISSING
--- no_error_log
[alert]
[emerg]



=== TEST 18: plain format: any JSON object is a session, no "cookie" needed
--- config
    location /t {
        session_redis main;
        session_redis_format plain;
        session_redis_key_prefix t202_18:;
        session_redis_required off;
        session_redis_fail_open on;
        session_redis_set $user_id user.id;
        proxy_set_header X-Session $session_redis_status;
        proxy_set_header X-User-Id $user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session [$http_x_user_id]\n";
    }
--- pipelined_requests eval
[("GET /t") x 2]
--- more_headers eval
[map { "Cookie: sid=$_" } qw(bare array)]
--- response_body eval
["VALID [bob]\n", "ERROR []\n"]
--- no_error_log
[alert]
[emerg]
