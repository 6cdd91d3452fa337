# vi:filetype=perl
#
# session_redis, express format: cookie-signature's test vector, secret
# rotation, forged and malformed cookies (none of which reach Redis).

use Test::Nginx::Socket 'no_plan';
use FindBin;
use Digest::SHA qw(hmac_sha256_base64);
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

# cookie-signature: "s:" id "." base64(HMAC-SHA256(secret, id)) without "="
sub sign {
    my ($id, $secret) = @_;
    my $sig = hmac_sha256_base64($id, $secret);
    $sig =~ s/=+$//;
    return "s:$id.$sig";
}

# the cookie module's encodeURIComponent
sub enc {
    my ($v) = @_;
    $v =~ s/([^A-Za-z0-9\-_.!~*'()])/sprintf('%%%02X', ord $1)/ge;
    return $v;
}

our $Session = '{"cookie":{"originalMaxAge":3600000,'
    . '"expires":"2036-11-27T01:57:37.589Z","httpOnly":true,"path":"/"},'
    . '"user":{"id":"alice","name":"Alice","roles":["user"]}}';

# HMAC hashes keys longer than its 64-byte block first
our $LongSecret = 'k' x 65 . ' a secret longer than one SHA-256 block';
our $SignedLong = sign('hello', $LongSecret);

# the test vector from cookie-signature's own tests
our $Hello = sign('hello', 'tobiiscool');
die "bad test vector $Hello"
    unless $Hello eq 's:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI';

# a real-looking express-session id (uid-safe, 24 bytes)
our $Sid = 'Xk3bQ9mZ_-uV7yL2cA0pR8sT1wE4nH6j';

our $SignedOld = sign($Sid, 'old secret');
our $SignedNew = sign($Sid, 'new secret');
our $SignedOther = sign($Sid, 'not our secret');

# the signature of one id on another
our $Swapped = 's:admin.' . (split /\./, sign('hello', 'tobiiscool'))[1];

redis('set', "t201:hello", $Session);
redis('set', "t201:$Sid", $Session);
redis('set', "t201:admin", $Session);

run_tests();

__DATA__

=== TEST 1: cookie-signature's test vector, URL-encoded as express sends it
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret tobiiscool;
        session_redis_key_prefix t201:;
        session_redis_cookie connect.sid;
        session_redis_set $user_id user.id;
        add_header X-Session "$session_redis_status $session_redis_id $user_id" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: connect.sid=" . main::enc($::Hello)
--- error_code: 200
--- response_body
reached
--- response_headers
X-Session: VALID hello alice



=== TEST 2: the same cookie, not URL-encoded
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret tobiiscool;
        session_redis_key_prefix t201:;
        add_header X-Session "$session_redis_status $session_redis_id" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers
Cookie: sid=s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI
--- error_code: 200
--- response_headers
X-Session: VALID hello



=== TEST 3: rotation: a cookie signed with the old secret verifies
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret "new secret";
        session_redis_secret "old secret";
        session_redis_key_prefix t201:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . main::enc($::SignedOld)
--- error_code: 200
--- response_headers
X-Session: VALID



=== TEST 4: rotation: a cookie signed with the new secret verifies
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret "new secret";
        session_redis_secret "old secret";
        session_redis_key_prefix t201:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . main::enc($::SignedNew)
--- error_code: 200
--- response_headers
X-Session: VALID



=== TEST 5: secrets are inherited; a foreign secret is INVALID
--- config
    session_redis_format express;
    session_redis_secret "new secret";
    session_redis_secret "old secret";

    location /t {
        session_redis main;
        session_redis_key_prefix t201:;
        add_header X-Session "$session_redis_status [$session_redis_id]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . main::enc($::SignedOther)
--- error_code: 401
--- response_headers
X-Session: INVALID []
--- error_log
client sent invalid session cookie "sid"



=== TEST 6: a signature moved to another id is INVALID
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret tobiiscool;
        session_redis_key_prefix t201:;
        add_header X-Session $session_redis_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "reached\n";
    }
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . main::enc($::Swapped)
--- error_code: 401
--- response_headers
X-Session: INVALID



=== TEST 7: malformed cookies: each one INVALID, never a crash
--- config
    large_client_header_buffers 4 32k;

    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret tobiiscool;
        session_redis_key_prefix t201:;
        session_redis_required off;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session\n";
    }
--- pipelined_requests eval
[("GET /t") x 22]
--- more_headers eval
[
    # unsigned: no "s:"
    "Cookie: sid=hello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    # "s:" without a dot
    "Cookie: sid=s%3Ahello",
    "Cookie: sid=s%3A",
    "Cookie: sid=s:",
    "Cookie: sid=s",
    # empty id, empty signature
    "Cookie: sid=s%3A.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    "Cookie: sid=s%3Ahello.",
    # bad percent-encoding
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5Q%",
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5%I",
    "Cookie: sid=s%ZZhello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    "Cookie: sid=%",
    # truncated and padded signatures
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5Q",
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI%3D",
    # control bytes, raw and encoded, in the id and the signature
    "Cookie: sid=s%3Ahel\x01lo.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    "Cookie: sid=s%3Ahel%00lo.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5Q%0A",
    "Cookie: sid=s%3Ahel\x7flo.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    # 8 KB values
    "Cookie: sid=s%3A" . ("a" x 8192) . ".DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    "Cookie: sid=" . ("%41" x 2731),
    "Cookie: sid=s%3A" . ("a" x 129) . ".DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    # high bytes
    "Cookie: sid=s%3Ah\xc3\xa9llo.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
    # and a good one at the end: the connection survived all of them
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
]
--- response_body eval
[("INVALID\n") x 21, "VALID\n"]



=== TEST 8: the first of several cookies of the same name counts
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret tobiiscool;
        session_redis_key_prefix t201:;
        session_redis_required off;
        proxy_set_header X-Session $session_redis_status;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_session\n";
    }
--- pipelined_requests eval
["GET /t", "GET /t"]
--- more_headers eval
[
    "Cookie: sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI; sid=forged",
    "Cookie: sid=forged; sid=s%3Ahello.DGDUkGlIkCzPz%2BC0B064FNgHdEjox7ch8tOBGslZ5QI",
]
--- response_body eval
["VALID\n", "INVALID\n"]



=== TEST 9: a secret longer than the HMAC block (hashed first) verifies
--- config eval
"    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret \"$::LongSecret\";
        session_redis_key_prefix t201:;
        add_header X-Session \$session_redis_status always;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 \"reached\\n\";
    }"
--- request
GET /t
--- more_headers eval
"Cookie: sid=" . main::enc($::SignedLong)
--- error_code: 200
--- response_headers
X-Session: VALID

