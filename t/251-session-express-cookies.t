# session_redis reads the Cookie header exactly as express-session does
# (cookie 0.7 parse, decodeURIComponent, cookie-signature): each header of
# the table is sent byte for byte, by a raw socket, to nginx and to the real
# express app of examples/app, and the identity both see must be the same
# (and the one the table expects).  Several Cookie headers, HTTP/2 cookie
# crumbs, and ids that only decode the way JavaScript decodes them.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use Digest::SHA qw(hmac_sha256_base64);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

need_example_app();

my $rp = free_port();
start_redis($rp);

my $secret = 'cookie table secret';
my $ap = start_example_app('app-251', $rp, $secret);

my $port = free_port();
my $port2 = free_port();
my $d = start_nginx('cookies', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 500ms; }
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$port2 http2;
        large_client_header_buffers 4 16k;

        location /api/profile {
            session_redis main;
            session_redis_format express;
            session_redis_cookie connect.sid;
            session_redis_secret "$secret";
            session_redis_required off;
            session_redis_set \$uid user.id;
            add_header X-Uid \$uid always;
            add_header X-Session \$session_redis_status always;
            empty_gif;
        }
    }
_EOC_

# ------------------------------------------------------------ helpers --

# one request, the Cookie lines exactly as given; returns (status, headers
# as a lower-cased hash, body)
sub raw_get {
    my ($p, @cookies) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                  Proto => 'tcp', Timeout => 5)
        or die "connect $p: $!";
    binmode $s;
    print $s "GET /api/profile HTTP/1.1\r\nHost: localhost\r\n"
             . join('', map { "Cookie: $_\r\n" } @cookies)
             . "Connection: close\r\n\r\n";
    my $resp = '';
    local $SIG{ALRM} = sub { die "timeout reading from $p\n" };
    alarm 10;
    while (sysread($s, my $buf, 65536)) { $resp .= $buf }
    alarm 0;
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
    my %h;
    for (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status // 0, \%h, $body // '');
}

# the user express-session sees: the app's own reading of its session
sub express_user {
    my ($status, $h, $body) = raw_get($ap, @_);
    return "(status $status)" if $status != 200;
    return $body =~ /"session_user":"([^"]*)"/ ? $1 : '';
}

sub nginx_user {
    my ($status, $h) = raw_get($port, @_);
    return "(status $status)" if $status != 200;
    return $h->{'x-uid'} // '';
}

sub redis_cmd {
    my @a = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rp,
                                  Proto => 'tcp') or die "redis: $!";
    binmode $s;
    print $s '*' . @a . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
    my $r = <$s>;
    return $r;
}

# a session as connect-redis stores it, under the id's UTF-8 bytes
sub store {
    my ($id, $user) = @_;
    my $json = '{"cookie":{"originalMaxAge":3600000,'
        . '"expires":"2099-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},'
        . '"user":{"id":"' . $user . '"}}';
    my $r = redis_cmd('SET', "sess:$id", $json, 'EX', '3600');
    die "redis: $r" unless $r =~ /^\+OK/;
}

# cookie-signature over the id's UTF-8 bytes: "s:" id "." base64 (no "=")
sub signed {
    my ($id) = @_;
    my $sig = hmac_sha256_base64($id, $secret);
    return "s:$id.$sig";
}

# cookie.serialize's encodeURIComponent
sub enc {
    my ($v) = @_;
    $v =~ s/([^A-Za-z0-9\-_.!~*'()])/sprintf('%%%02X', ord $1)/ge;
    return $v;
}

sub login {
    my ($user) = @_;
    my $h = `curl -s -m 5 -D - -o /dev/null -H 'Content-Type: application/json' -d '{"user":"$user"}' http://127.0.0.1:$ap/api/login`;
    my ($v) = $h =~ /^Set-Cookie: connect\.sid=([^;]+)/mi;
    return $v;
}

# ------------------------------------------------------------ sessions --

my $A = login('alice');
my $B = login('bob');
like($A // '', qr/^s%3A[A-Za-z0-9_-]+\.\S+$/, 'the app issued a cookie for alice');
like($B // '', qr/^s%3A[A-Za-z0-9_-]+\.\S+$/, 'the app issued a cookie for bob');
(my $Araw = $A) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
(my $Alc = $A) =~ s/(%[0-9A-F]{2})/lc $1/ge;

# ids that a custom genid could make, stored under their UTF-8 bytes
my %ids = (
    carol  => 'ab%zz',                  # not percent-encoding: kept raw
    erin   => "\xc3\xa9x",              # "\u00e9x"
    frank  => 'f%E9',                   # a lone UTF-8 lead byte
    grace  => 'g%C0%80',                # overlong
    heidi  => 'h%ED%A0%80',             # a surrogate
    trent  => 't%F4%90%80%80',          # beyond U+10FFFF
    ivan   => "i\0j",                   # %00 decodes to NUL
    judy   => 'k+l',                    # '+' is not a space
    mike   => 'm.n',                    # split at the last '.'
    olivia => 'o=p',                    # everything after the first '='
    peggy  => '%41',                    # decoded once, not twice
    victor => "\xf0\x9f\x98\x80",       # U+1F600
);
store($ids{$_}, $_) for keys %ids;
store('k l', 'mallory');
store('A', 'mallory');

my %c = map { $_ => signed($ids{$_}) } keys %ids;

my $T = "\t";

# [ Cookie header lines, the user express-session serves ]
my @table = (
    [["connect.sid=$A"], 'alice'],
    [["CONNECT.SID=$A; connect.sid=$B"], 'bob'],
    [["Connect.Sid=$A"], ''],
    [["x=1, connect.sid=$A; connect.sid=$B"], 'bob'],
    [["x=1;${T}connect.sid=$A; connect.sid=$B"], 'alice'],
    [["connect.sid=\"$A\""], 'alice'],
    [["connect.sid=$A ; x=1"], 'alice'],
    [["connect.sid=$T$A"], 'alice'],
    [["connect.sid=$A$T; x=1"], 'alice'],
    [["xconnect.sid=$B; connect.sid=$A"], 'alice'],
    [["connect.sid=$A; connect.sid=$B"], 'alice'],
    [[" connect.sid=$B"], 'bob'],
    [["connect.sid=garbage; connect.sid=$A"], ''],
    [["connect.sid=; connect.sid=$A"], ''],
    [["connect.sid=$A, x=1"], ''],
    [["connect.sid=\"$A"], ''],
    [["connect.sid=\"\"; connect.sid=$A"], ''],
    [["x=1", "connect.sid=$A"], 'alice'],
    [["connect.sid=$B", "connect.sid=$A"], 'bob'],
    [["CONNECT.SID=$A", "connect.sid=$B"], 'bob'],
    [["connect.sid", "connect.sid=$A"], 'alice'],
    [["", "connect.sid=$A"], 'alice'],
    [["a=b;connect.sid=$A"], 'alice'],
    [["connect.sid = $A"], 'alice'],
    [["connect.sid$T=$T$A"], 'alice'],
    [["=x; connect.sid=$A"], 'alice'],
    [["junk; connect.sid=$A"], 'alice'],
    [["connect.sid;=$A; connect.sid=$B"], 'bob'],
    [["connect.sid=$A=="], ''],
    [["connect.sid=$A;"], 'alice'],
    [["connect.sid=$Alc"], 'alice'],
    [["connect.sid=$Araw"], 'alice'],
    [["connect.sid=\"$Araw\""], 'alice'],
    [["connect.sid=$c{carol}"], 'carol'],
    [["connect.sid=" . enc($c{erin})], 'erin'],
    [["connect.sid=s:\xe9x." . (split /\./, $c{erin})[1]], 'erin'],
    [["connect.sid=$c{frank}"], 'frank'],
    [["connect.sid=$c{grace}"], 'grace'],
    [["connect.sid=$c{heidi}"], 'heidi'],
    [["connect.sid=$c{trent}"], 'trent'],
    [["connect.sid=" . enc($c{ivan})], 'ivan'],
    [["connect.sid=$c{judy}"], 'judy'],
    [["connect.sid=" . enc($c{judy})], 'judy'],
    [["connect.sid=" . enc($c{mike})], 'mike'],
    [["connect.sid=$c{olivia}"], 'olivia'],
    [["connect.sid=" . enc($c{peggy})], 'peggy'],
    [["connect.sid=" . enc($c{victor})], 'victor'],
    # the same bytes raw: each one a Latin-1 character to node
    [["connect.sid=$c{victor}"], ''],
);

cmp_ok(scalar @table, '>=', 25, 'at least 25 Cookie headers');

sub show {
    my $s = join ' | ', @{ $_[0] };
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return length($s) > 90 ? substr($s, 0, 90) . '...' : $s;
}

for my $t (@table) {
    my ($lines, $want) = @$t;
    my $e = express_user(@$lines);
    my $n = nginx_user(@$lines);
    is($e, $want, 'express: ' . show($lines));
    is($n, $e, 'nginx as express: ' . show($lines));
}

# ------------------------------------------------------ HTTP/2 crumbs --
# RFC 9113 8.2.3: crumbs are one header joined with "; ", as node joins
# several Cookie lines

SKIP: {
    skip 'curl without HTTP/2', 8
        unless `curl -V` =~ /HTTP2/;

    for my $t ([['x=1', "connect.sid=$A"], 'alice'],
               [["connect.sid=$B", "connect.sid=$A"], 'bob'],
               [["CONNECT.SID=$A", "connect.sid=$B"], 'bob'],
               [['connect.sid=', "connect.sid=$A"], ''])
    {
        my ($crumbs, $want) = @$t;
        my $e = express_user(join '; ', @$crumbs);
        my $args = join ' ', map { "-H 'Cookie: $_'" } @$crumbs;
        my $h = `curl -s -m 5 --http2-prior-knowledge -D - -o /dev/null $args http://127.0.0.1:$port2/api/profile`;
        my ($n) = $h =~ /^x-uid: (\S*)/mi;
        is($e, $want, 'express, crumbs joined: ' . show($crumbs));
        is($n // '', $e, 'nginx over HTTP/2 as express: ' . show($crumbs));
    }
}

errlog_clean($d, 'cookies');
done_testing();
