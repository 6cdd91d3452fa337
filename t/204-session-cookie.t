# vi:filetype=perl
#
# session_redis reads the Cookie header as express-session's parser does,
# for both formats: exact names, ';' only, spaces and tabs trimmed, quotes
# stripped, the first pair of the name wins across all Cookie headers.
# $session_redis_id is ready before the limits run, so a per-user limit
# keys on the session, whatever the spelling of the header.  (The same
# table against the real express app: t/251.)

use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(hmac_sha256_base64);

repeat_each(1);
no_shuffle();
log_level('info');

our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT};

sub redis {
    open(my $fh, '-|', 'redis-cli', '-p', $RedisPort, @_)
        or die "redis-cli: $!";
    my $out = do { local $/; <$fh> };
    close $fh;
    chomp $out;
    return $out;
}

sub enc {
    my ($v) = @_;
    $v =~ s/([^A-Za-z0-9\-_.!~*'()])/sprintf('%%%02X', ord $1)/ge;
    return $v;
}

sub signed {
    my ($id) = @_;
    return enc("s:$id." . hmac_sha256_base64($id, 'k204'));
}

our $Session = '{"cookie":{"originalMaxAge":3600000,'
    . '"expires":"2099-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},'
    . '"user":{"id":"alice"}}';

redis('set', 't204:abc', $Session);
redis('set', 't204:ABC', '{"cookie":{},"user":{"id":"mallory"}}');
redis('set', 't204e:alice1', $Session);
redis('set', "t204e:a\tb", $Session);

our $A = signed('alice1');
our $Tab = signed("a\tb");

our $HttpConfig = <<'_EOC_';
    redis_pool main { server 127.0.0.1:$TEST_NGINX_REDIS_PORT; }
    ratelimit_redis_zone $session_redis_id zone=per_user rate=2r/m pool=main;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $HttpConfig)
        unless defined $block->http_config;
    $block->set_value("no_error_log", "[alert]\n[emerg]\n[error]")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: plain: the cookie as express reads it
--- config
    location /t {
        session_redis main;
        session_redis_key_prefix t204:;
        session_redis_required off;
        session_redis_set $uid user.id;
        add_header X-S "$session_redis_status [$uid] [$session_redis_id]" always;
        empty_gif;
    }
--- pipelined_requests eval
[("GET /t") x 12]
--- more_headers eval
[
    "Cookie: SID=ABC",
    "Cookie: SID=ABC; sid=abc",
    "Cookie: x=1, sid=abc",
    "Cookie: x=1, sid=ABC; sid=abc",
    "Cookie: x=1;\tsid=abc; sid=ABC",
    "Cookie: sid=\"abc\"",
    "Cookie: sid=abc ; x=1",
    "Cookie: sid=\tabc",
    "Cookie: sid; sid=abc",
    "Cookie: sid=; sid=abc",
    "Cookie: x=1\nCookie: sid=abc\nCookie: sid=ABC",
    "Cookie: sid=\"\nCookie: sid=abc",
]
--- response_headers eval
[
    "X-S: MISSING [] []",
    "X-S: VALID [alice] [abc]",
    "X-S: MISSING [] []",
    "X-S: VALID [alice] [abc]",
    "X-S: VALID [alice] [abc]",
    "X-S: VALID [alice] [abc]",
    "X-S: VALID [alice] [abc]",
    "X-S: VALID [alice] [abc]",
    "X-S: VALID [alice] [abc]",
    "X-S: MISSING [] []",
    "X-S: VALID [alice] [abc]",
    "X-S: MISSING [] []",
]



=== TEST 2: a per-user limit keyed on $session_redis_id: one budget per session
--- config
    location /t {
        ratelimit_redis zone=per_user;
        add_header X-RL $ratelimit_redis_status always;
        session_redis main;
        session_redis_format express;
        session_redis_secret k204;
        session_redis_cookie connect.sid;
        session_redis_key_prefix t204e:;
        empty_gif;
    }
--- pipelined_requests eval
[("GET /t") x 5]
--- more_headers eval
[
    "Cookie: connect.sid=$::A",
    "Cookie: connect.sid=\"$::A\"; connect.sid=decoy1",
    "Cookie: CONNECT.SID=decoy2\nCookie: connect.sid=$::A",
    "Cookie: x=decoy3;\tconnect.sid=$::A",
    "Cookie: x=1, connect.sid=$::A; connect.sid=decoy4",
]
--- error_code eval
[200, 200, 429, 429, 401]
--- response_headers eval
["X-RL: PASSED", "X-RL: PASSED", "X-RL: REJECTED", "X-RL: REJECTED", "!X-RL"]
--- no_error_log
[alert]
[emerg]



=== TEST 3: an id with a control character is looked up, but is no variable
--- config
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret k204;
        session_redis_cookie connect.sid;
        session_redis_key_prefix t204e:;
        session_redis_set $uid user.id;
        add_header X-S "$session_redis_status [$uid] [$session_redis_id]" always;
        empty_gif;
    }
--- request
GET /t
--- more_headers eval
"Cookie: connect.sid=$::Tab"
--- error_code: 200
--- response_headers
X-S: VALID [alice] []



=== TEST 4: $session_redis_id outside session_redis is empty; forged is empty
--- config
    location /off {
        add_header X-Id "[$session_redis_id]" always;
        empty_gif;
    }
    location /t {
        session_redis main;
        session_redis_format express;
        session_redis_secret k204;
        session_redis_cookie connect.sid;
        session_redis_key_prefix t204e:;
        session_redis_required off;
        add_header X-Id "[$session_redis_id]" always;
        empty_gif;
    }
--- pipelined_requests eval
["GET /off", "GET /t"]
--- more_headers eval
["Cookie: connect.sid=$::A", "Cookie: connect.sid=s%3Aalice1.forged"]
--- response_headers eval
["X-Id: []", "X-Id: []"]
--- no_error_log
[alert]
[emerg]
