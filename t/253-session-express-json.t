# session_redis reads the stored session as connect-redis (JSON.parse) and
# express-session do.  Sessions that express stores (made by node's own
# JSON.stringify: a lone surrogate, \u0000, integers past 2^63, nesting
# deeper than 2048) are VALID; what the app refuses or ignores, nginx
# refuses or ignores too, each one compared with the real app.  Values of
# session_redis_set are what JavaScript makes of them (String() for
# numbers, JSON.stringify for objects), compared with node, byte for byte.

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

my $secret = 'json secret';
my $ap = start_example_app('app-253', $rp, $secret);

# ------------------------------------------------------------ helpers --

sub raw_get {
    my ($p, $path, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                  Proto => 'tcp', Timeout => 5)
        or die "connect $p: $!";
    binmode $s;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n"
             . join('', map { "$_\r\n" } @headers)
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
        $h{lc $1} = $2 if /^([^:]+):[ \t]*(.*)$/;
    }
    return ($status // 0, \%h, $body // '');
}

sub redis_cmd {
    my @a = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rp,
                                  Proto => 'tcp') or die "redis: $!";
    binmode $s;
    print $s '*' . @a . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
    my $r = <$s>;
    die "redis: $r" unless $r =~ /^\+OK/;
}

sub cookie {
    my ($id) = @_;
    my $v = "s:$id." . hmac_sha256_base64($id, $secret);
    $v =~ s/([^A-Za-z0-9\-_.!~*'()])/sprintf('%%%02X', ord $1)/ge;
    return "Cookie: connect.sid=$v";
}

# node's JSON.stringify of a session built in JavaScript
sub node_json {
    my ($js) = @_;
    open my $f, '>', "$work/gen.js" or die;
    print $f "process.stdout.write(JSON.stringify($js));";
    close $f;
    my $out = `node $work/gen.js`;
    die "node: $?" if $?;
    return $out;
}

my $Cookie = '"cookie":{"originalMaxAge":3600000,'
    . '"expires":"2099-01-01T00:00:00.000Z","httpOnly":true,"path":"/"}';
my $CookieJs = '{originalMaxAge: 3600000, expires: "2099-01-01T00:00:00.000Z",'
    . ' httpOnly: true, path: "/"}';

# the values session (checked at the end): its location goes into the
# config from the start.  Numbers: a table, the tricky ones of
# Number.prototype.toString, and random doubles, each as a literal the way
# JSON may write it
my @nums = qw(
    0 -0 0.0 1 -1 1.0 1.5 100 1e2 1E2 1e+2 1.5e-7 -1.5e-7 0.00001 0.000001
    1e-6 1e-7 1.2e-6 1e20 1e21 1e22 1e23 123456789012345680000
    123456789012345678901 1.25e21 0.1 0.30000000000000004 4.35 0.000001234
    1.2345678901234567e-7 12345678.9 5e-324 2.2250738585072014e-308
    2.2250738585072009e-308 1.7976931348623157e308 9007199254740991
    9007199254740992 9007199254740993 9223372036854775807
    9223372036854775808 -9223372036854775808 18446744073709551616
    4294967296.5 0.1e1 25e-1 8.98846567431158e307 9.5367431640625e-7 5e-7
    3e-6 1e400 -1e400 1e-400 -1e-400 123e-20 1.0000000000000002
    0.9999999999999999 2e-323 4.9406564584124654e-324
);
srand(253);
for (1 .. 80) {
    my $v;
    do { $v = unpack('d', pack('Q', int(rand(2 ** 32)) * 2 ** 32 + int(rand(2 ** 32)))) }
        until $v == $v && $v - $v == 0;    # finite
    push @nums, sprintf('%.17g', $v);
}
for (1 .. 20) {                             # near powers of two
    my $e = int(rand(2000)) - 1000;
    push @nums, sprintf('%.17g', 2 ** $e), sprintf('%.17g', 2 ** $e * (1 + 2 ** -52));
}

my @objs = (
    '{"b":1,"a":[1.5e-7,"x"],"2":true,"10":null,"1":{"z":1e21},"b":2,"":0,'
        . '"01":3,"4294967295":4,"4294967294":5,"-1":6,"__proto__":7}',
    '[1.5e-7,1e21,-0,0.1,1e400,-1e400,true,false,null,[],{}]',
    '["\"\\\\\/\b\f\n\r\t\u0001\u001f\u2028\ud83d\ude00\ud83d\udc00x\udc00","\u00e9\u0000"]',
    '{"k\u0000":"v","\ud800":1,"\u00e9":2}',
);

my $session = '{' . $Cookie . ',"user":{"id":"alice","name":"Al\ud83dce",'
    . '"flash":"\ud83d x","note":"x\u0000y",' . "\"bad\":\"\xff\xc3x\xf0\x9f\x98y\xe0\x80z\xed\xa0\x80w\xf4\x90\x80\x80v\"},"
    . '"n":[' . join(',', @nums) . '],"o":[' . join(',', @objs) . ']}';
redis_cmd('SET', 'sess:t253values', $session, 'EX', '3600');

my @paths = ((map { "n.$_" } 0 .. $#nums), (map { "o.$_" } 0 .. $#objs),
             qw(user.name user.flash user.note user.bad user));

open my $vc, '>', "$work/values.conf" or die;
print $vc "location /values {\n"
    . "    session_redis main;\n    session_redis_format express;\n"
    . "    session_redis_cookie connect.sid;\n    session_redis_secret \"$secret\";\n";
for my $j (0 .. $#paths) {
    print $vc "    session_redis_set \$v$j $paths[$j];\n"
        . "    add_header X-V$j \"[\$v$j]\" always;\n";
}
print $vc "    empty_gif;\n}\n";
close $vc;

my $port = free_port();
my $d = start_nginx('json', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 500ms; }
    server {
        listen 127.0.0.1:$port;
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
        include $work/values.conf;
    }
_EOC_

# ------------------------------- sessions express stores and reads back --

# express itself re-serialises the session (its hash() with a replacer):
# objects 3000 deep it reads back, arrays that deep it cannot
my $deep = '(() => { let o = {}; for (let i = 0; i < 3000; i++) o = {o}; return o; })()';
my %stored = (
    surrogate => "{cookie: $CookieJs, user: {id: 'alice', name: 'Al\\ud83dce'},"
                 . " flash: '\\ud83d x'}",
    nul       => "{cookie: $CookieJs, user: {id: 'alice'}, note: 'x\\u0000y'}",
    big       => "{cookie: $CookieJs, user: {id: 'alice'}, n: 2 ** 64,"
                 . " m: -(2 ** 63), k: 1e300}",
    deep      => "{cookie: $CookieJs, user: {id: 'alice'}, flash: $deep}",
);
$stored{all} = "Object.assign(" . join(', ', map { $stored{$_} } sort keys %stored) . ")";

# what the app sees: its session user, '' for none, 'refused' for a 500
sub express_sees {
    my ($id) = @_;
    my ($st, $h, $body) = raw_get($ap, "/api/profile", cookie($id));
    return 'refused' if $st == 500;
    return "(status $st)" if $st != 200;
    return $body =~ /"session_user":"([^"]*)"/ ? $1 : '';
}

sub nginx_sees {
    my ($id) = @_;
    diag("nginx port $port app $ap") if 0;
    my ($st, $h) = raw_get($port, '/api/profile', cookie($id));
    return ('refused', $h->{'x-session'} // '') if $st == 503;
    return ("(status $st)", '') if $st != 200;
    return ($h->{'x-uid'} // '', $h->{'x-session'} // '');
}

for my $name (sort keys %stored) {
    my $json = node_json($stored{$name});
    redis_cmd('SET', "sess:t253$name", $json, 'EX', '3600');
    is(express_sees("t253$name"), 'alice', "$name: the app reads the session it stored");
    my ($u, $st) = nginx_sees("t253$name");
    is("$u $st", 'alice VALID', "$name: VALID at the edge");
}

# ------------------------------------ values that are not express's own --

# arrays nested deeper than express's own hash() can walk (about 2200 in
# node 20) make the app hang, not refuse: that is t/205's, not compared here
my @raw = (
    # [ stored value, what the app does ]
    ['{', 'refused'],
    ['{"cookie":{},"user":{"id":"alice"}', 'refused'],
    ['{"cookie":{},"user":{"id":"alice"}} x', 'refused'],
    ["\xef\xbb\xbf{\"cookie\":{},\"user\":{\"id\":\"alice\"}}", 'refused'],
    ['{"cookie":{},"user":{"id":"alice",}}', 'refused'],
    ['{"cookie":{},"user":{"id":"al' . "\x01" . 'ice"}}', 'refused'],
    ['{"cookie":{},"user":{"id":"alice"},"x":01}', 'refused'],
    ['{"cookie":{},"user":{"id":"alice"},"x":"\x"}', 'refused'],
    ['[]', 'refused'],
    ['"a session"', 'refused'],
    ['1', 'refused'],
    ['true', 'refused'],
    ['1e400', 'refused'],
    ['{"user":{"id":"alice"}}', 'refused'],
    ['{"cookie":null,"user":{"id":"alice"}}', 'refused'],
    ['{"cookie":"c","user":{"id":"alice"}}', 'refused'],
    ['{"cookie":true,"user":{"id":"alice"}}', 'refused'],
    ['{"cookie":{"maxAge":"1h"},"user":{"id":"alice"}}', 'refused'],
    ['{"cookie":{"maxAge":[]},"user":{"id":"alice"}}', 'refused'],
    ['', ''],
    ['null', ''],
    ['false', ''],
    ['0', ''],
    ['-0.0e7', ''],
    ['1e-400', ''],
    ['""', ''],
    [' null ', ''],
    ['{"cookie":0,"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":"","user":{"id":"alice"}}', 'alice'],
    ['{"cookie":[],"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{"maxAge":5000},"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{"maxAge":""},"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{"expires":"2001-01-01T00:00:00.000Z"},"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{"expires":"soon"},"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{},"user":{"id":"mallory"},"user":{"id":"alice"}}', 'alice'],
    ['{"cookie":{},"cookie":null,"user":{"id":"alice"}}', 'refused'],
    ['{"cookie":{},"\u0075ser":{"\u0069d":"\u0061lice"}}', 'alice'],
    ["{\"cookie\":{},\"user\":{\"id\":\"alice\",\"name\":\"\xff\xc3\"}}", 'alice'],
    [" \t\r\n{\"cookie\":{},\"user\":{\"id\":\"alice\"}} \n", 'alice'],
    ['{"cookie":{},"user":{"id":"alice"},"n":-1.5E+400,"z":-0}', 'alice'],
    ['{"cookie":{},"user":{"id":"alice"},"d":' . ('{"o":' x 3000) . '1' . ('}' x 3000) . '}', 'alice'],
);

my $i = 0;
for my $t (@raw) {
    my ($value, $want) = @$t;
    $i++;
    redis_cmd('SET', "sess:t253raw$i", $value, 'EX', '3600');
    (my $show = substr($value, 0, 60)) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    my $e = express_sees("t253raw$i");
    my ($n, $st) = nginx_sees("t253raw$i");
    is($e, $want, "the app: $show");
    is($n, $e, "nginx as the app ($st): $show");
    if ($want eq 'refused') {
        is($st, 'ERROR', "ERROR, not INVALID: $show");
    } elsif ($want eq '') {
        is($st, 'MISSING', "MISSING: $show");
    }
}
ok(errlog_has($d, qr/session in redis pool "main" cannot be decoded/),
   'an undecodable session has its own log line');
ok(!errlog_has($d, qr/is not a JSON object/), 'and not the misleading one');

# ------------------------------------ values as JavaScript renders them --

# node: the UTF-8 bytes (hex) of what each path is to JavaScript
open my $js, '>', "$work/values.js" or die;
print $js <<'_JS_';
const s = JSON.parse(require('fs').readFileSync(0, 'utf8'));
for (const p of process.argv.slice(2)) {
    let v = s;
    for (const k of p.split('.')) v = v == null ? undefined : v[k];
    const out = v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    console.log(Buffer.from(out, 'utf8').toString('hex'));
}
_JS_
close $js;
open my $sf, '>', "$work/session.json" or die;
print $sf $session;
close $sf;
my @want = map { chomp; pack('H*', $_) } `node $work/values.js @paths < $work/session.json`;
is(scalar @want, scalar @paths, 'node rendered every path');

my ($st, $h) = raw_get($port, '/values', cookie('t253values'));
is($st, 200, 'the values session is VALID');
for my $j (0 .. $#paths) {
    my $w = $want[$j] // '';
    # control characters never reach a header: such values stay empty
    $w = '' if $w =~ /[\x00-\x1f\x7f]/;
    (my $show = $paths[$j] =~ /^n\.(\d+)$/ ? "$paths[$j] = $nums[$1]" : $paths[$j])
        =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    is($h->{"x-v$j"}, "[$w]", "as JavaScript: $show");
}
ok(errlog_has($d, qr/a session value holds control characters, not used/),
   'a value with control characters is not used, and logged');

errlog_clean($d, 'json');
done_testing();
