# vi:filetype=perl
#
# session_redis, plain format: statuses, session_redis_set, the identity
# header, session_redis_required and error_page.

use Test::Nginx::Socket 'no_plan';
use FindBin;
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

our $Future = '2036-11-27T01:57:37.589Z';

our $Alice = '{"cookie":{"originalMaxAge":3600000,"expires":"' . $Future
    . '","httpOnly":true,"path":"/"},'
    . '"user":{"id":"alice","name":"Alice","roles":["user"]}}';

redis('set', 't200_1:abc', $Alice);
redis('set', 't200_3:abc', $Alice);
redis('set', 't200_4:A-z_09', $Alice);
redis('set', 't200_7:abc',
      '{"cookie":{"expires":null},"user":{"id":"bob","age":42,'
      . '"score":1.5,"whole":3.0,"neg":-7,"big":12345678901234,'
      . '"tiny":0.1,"admin":true,"banned":false,"nothing":null,'
      . '"roles":["user","admin"],"prefs":{"theme":"dark","n":[1,2]},'
      . '"quote":"a \\"b\\" c","uni":"caf\\u00e9"}}');
redis('set', 't200_8:abc', $Alice);
redis('set', 't200_10:abc', $Alice);
redis('set', 't200_13:abc', $Alice);
redis('set', 't200_14:abc', $Alice);
redis('set', 't200_15:abc', $Alice);
redis('set', 't200_16:abc', $Alice);
redis('set', 't200_17:abc', $Alice);
redis('set', 't200_18:abc', $Alice);
redis('set', 't200_19:abc', $Alice);
redis('set', 't200_19:old', '{"cookie":{"expires":"2001-01-01T00:00:00.000Z"}}');

run_tests();

__DATA__

=== TEST 1: VALID: a plain session id found in Redis
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_1:;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        add_header X-Session $session_redis_status always;
        add_header X-Session-Id $session_redis_id always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "user=$http_x_user_id\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_body
user=alice
--- response_headers
X-Session: VALID
X-Session-Id: abc



=== TEST 2: MISSING: no cookie at all is 401
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_2:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: other=abc; sidx=abc
--- error_code: 401
--- response_headers
X-Session: MISSING
!X-Session-Id



=== TEST 3: MISSING: a well-formed id that Redis does not have
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_3:;
        add_header X-Session $session_redis_status always;
        add_header X-Session-Id $session_redis_id always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=nosuchsession
--- error_code: 401
--- response_headers
X-Session: MISSING
X-Session-Id: nosuchsession



=== TEST 4: VALID: the whole plain alphabet, and the cookie among others
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_4:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: a=1; sid=A-z_09; b=2
--- error_code: 200
--- response_body
reached
--- response_headers
X-Session: VALID



=== TEST 5: INVALID: a plain id outside [A-Za-z0-9_-] never reaches Redis
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_5:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc.def
--- error_code: 401
--- response_headers
X-Session: INVALID
!X-Session-Id
--- error_log
client sent invalid session cookie "sid"



=== TEST 6: INVALID: a plain id of 129 characters
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_6:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . ("a" x 129)
--- error_code: 401
--- response_headers
X-Session: INVALID



=== TEST 7: session_redis_set: nested paths, numbers, booleans, arrays, missing
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_7:;
        session_redis_set $s_id user.id;
        session_redis_set $s_age user.age;
        session_redis_set $s_score user.score;
        session_redis_set $s_whole user.whole;
        session_redis_set $s_neg user.neg;
        session_redis_set $s_big user.big;
        session_redis_set $s_tiny user.tiny;
        session_redis_set $s_admin user.admin;
        session_redis_set $s_banned user.banned;
        session_redis_set $s_nothing user.nothing;
        session_redis_set $s_roles user.roles;
        session_redis_set $s_role1 user.roles.1;
        session_redis_set $s_role9 user.roles.9;
        session_redis_set $s_prefs user.prefs;
        session_redis_set $s_theme user.prefs.theme;
        session_redis_set $s_quote user.quote;
        session_redis_set $s_uni user.uni;
        session_redis_set $s_missing user.no.such.path;
        session_redis_set $s_through user.id.length;
        session_redis_set $s_expires cookie.expires;
        add_header X-A "id=$s_id age=$s_age score=$s_score whole=$s_whole neg=$s_neg big=$s_big tiny=$s_tiny" always;
        add_header X-B "admin=$s_admin banned=$s_banned nothing=[$s_nothing] missing=[$s_missing] through=[$s_through] expires=[$s_expires]" always;
        add_header X-C "roles=$s_roles role1=$s_role1 role9=[$s_role9]" always;
        add_header X-D "prefs=$s_prefs theme=$s_theme quote=$s_quote" always;
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
X-A: id=bob age=42 score=1.5 whole=3 neg=-7 big=12345678901234 tiny=0.1
X-B: admin=true banned=false nothing=[] missing=[] through=[] expires=[]
X-C: roles=["user","admin"] role1=admin role9=[]
X-D: prefs={"theme":"dark","n":[1,2]} theme=dark quote=a "b" c



=== TEST 8: the identity header overrides one the client sent
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_8:;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "user=$http_x_user_id\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
X-User-Id: mallory
--- error_code: 200
--- response_body
user=alice



=== TEST 9: required off: no session passes, a spoofed X-User-Id is dropped
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_9:;
        session_redis_required off;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "user=[$http_x_user_id] status=$http_x_session\n";
    }
--- request
GET /t
--- more_headers
X-User-Id: mallory
--- error_code: 200
--- response_body
user=[] status=MISSING



=== TEST 10: required off: a valid session still sets the variables
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_10:;
        session_redis_required off;
        session_redis_set $user_id user.id;
        proxy_set_header X-User-Id $user_id;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "user=[$http_x_user_id] status=$http_x_session\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc
--- error_code: 200
--- response_body
user=[alice] status=VALID



=== TEST 11: required off: an invalid cookie passes as INVALID
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_11:;
        session_redis_required off;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "status=$http_x_session\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=../../etc/passwd
--- error_code: 200
--- response_body
status=INVALID



=== TEST 12: error_page 401 =302 /login
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_12:;
        error_page 401 =302 /login;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /login {
        add_header X-Session $session_redis_status always;
        add_header Location /signin always;
        empty_gif;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- error_code: 302
--- response_headers
X-Session: MISSING
Location: /signin



=== TEST 13: error_page 401 to a named location; the check runs once
--- config
    session_redis main;
    session_redis_key_prefix t200_13:;
    error_page 401 = @login;

    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location @login {
        add_header X-Session $session_redis_status always;
        return 302 /login?next=$uri;
    }
    location = /echo {
        session_redis off;
        return 200 "reached\n";
    }
--- request
GET /t/page
--- more_headers
Cookie: sid=bad!
--- error_code: 302
--- response_headers_like
Location: .*/login\?next=/t/page
X-Session: INVALID



=== TEST 14: session_redis off in a nested location
--- config
    session_redis main;
    session_redis_key_prefix t200_14:;

    location /public {
        session_redis off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        session_redis off;
        return 200 "reached [$session_redis_status]\n";
    }
--- request
GET /public
--- error_code: 200
--- response_body
reached []



=== TEST 15: a custom cookie name
--- config
    location /t {
        session_redis main;
        session_redis_cookie app_session;
        session_redis_key_prefix t200_15:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=nope; app_session=abc
--- error_code: 200
--- response_headers
X-Session: VALID



=== TEST 16: two cookies of the same name: the first one counts (valid first)
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_16:;
        add_header X-Session $session_redis_status always;
        add_header X-Session-Id $session_redis_id always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=abc; sid=x%00y
--- error_code: 200
--- response_headers
X-Session: VALID
X-Session-Id: abc



=== TEST 17: two cookies of the same name: the first one counts (invalid first)
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_17:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=a/b
Cookie: sid=abc
--- error_code: 401
--- response_headers
X-Session: INVALID



=== TEST 18: an empty cookie value is MISSING; keepalive requests are independent
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_18:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- pipelined_requests eval
["GET /t", "GET /t"]
--- more_headers eval
["Cookie: sid=", "Cookie: sid=abc"]
--- error_code eval
[401, 200]



=== TEST 19: nginx_session_redis_requests_total counts each result once
--- http_config
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    redis_pool down { server 127.0.0.1:1; connect_timeout 100ms; }
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t200_19:;
        session_redis_required off;
        error_page 401 = /echo;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /down {
        session_redis down;
        session_redis_fail_open on;
        session_redis_required off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
    location = /metrics {
        health_metrics;
    }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /down",
 "GET /metrics"]
--- more_headers eval
["Cookie: sid=abc", "Cookie: sid=abc", "", "Cookie: sid=nope",
 "Cookie: sid=a.b", "Cookie: sid=old", "Cookie: sid=abc", ""]
--- response_body_like eval
[("reached\n") x 7,
 do {
     my $p = CORE::join '', map { "nginx_session_redis_requests_total"
                            . "\\{result=\"$_->[0]\"\\} $_->[1]\\n" }
             [valid => 3], [missing => 2], [invalid => 1], [expired => 0],
             [error => 1];
     qr/$p/
 }]
--- no_error_log
[alert]
[emerg]
