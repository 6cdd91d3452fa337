# ratelimit_redis's Redis key layout: one string per zone and limited key,
# "rl:{ZONE:KEY}:WINDOW" = "START:CURRENT:PREVIOUS", rolled in place when
# a window ends and dropped by its TTL at the end of the next window.
#
# 1. The script, against Redis, with stored values from this window, the
#    last one and an older one: the previous window counts weighted by its
#    overlap, an older one not at all, a rejected request writes nothing.
# 2. Through nginx: the key a request leaves in Redis, its value and TTL.

use strict;
use warnings;
use FindBin;
use Test::More;
use IO::Socket::INET;
use POSIX qw(floor);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

my $script = do {
    open my $f, '<', "$FindBin::Bin/../ngx_http_ratelimit_redis_batch.c" or die $!;
    local $/;
    my $src = <$f>;
    my ($body) = $src =~ /ngx_http_ratelimit_redis_script = \{\s*ngx_string\((.*?)\),\s*\{ 0 \}/s
        or die "script not found";
    join '', map { s/\\n/\n/g; s/\\"/"/g; s/\\\\/\\/g; $_ } $body =~ /"((?:[^"\\]|\\.)*)"/g;
};

my $rs = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$rp", Proto => 'tcp')
    or die "redis: $!";

sub cmd {
    my $req = '*' . @_ . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @_;
    print $rs $req;
    return reply();
}

sub reply {
    my $line = <$rs>;
    $line =~ s/\r\n$//;
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+' || $t eq ':';
    die "redis error: $v\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        read $rs, my $s, $v + 2;
        return substr($s, 0, $v);
    }
    return [map { reply() } 1 .. $v] if $t eq '*';
    die "bad reply line: $line";
}

my $sha = cmd('SCRIPT', 'LOAD', $script);

# a window of about 16 years: no boundary falls inside the test, and the
# share of the previous window still covered is the same to 1e-9
my $w = 500_000_000_000;
my ($s) = @{ cmd('TIME') };
my $now = $s * 1000;
my $start = $now - $now % $w;
my $f = ($w - $now % $w) / $w;            # weight of the previous window

# one request, one zone: (admitted, remaining after it, retry > 0)
sub one {
    my ($key, $limit) = @_;
    my $r = cmd('EVALSHA', $sha, 1, $key, 1, 1, $limit, $w, 0);
    my $left = $r->[2] - $r->[0];
    return "$r->[0] " . ($left > 0 ? $left : 0) . ' ' . ($r->[3] > 0 ? 1 : 0);
}

# this window's count
cmd('SET', 'rl:{t:cur}:w', "$start:4:0", 'PX', 9_000_000);
is(one('rl:{t:cur}:w', 5), '1 0 0', 'this window: 4 counted, the 5th of 5 is admitted');
is(cmd('GET', 'rl:{t:cur}:w'), "$start:5:0", 'this window: the count moves to 5');
my $kept = cmd('PTTL', 'rl:{t:cur}:w');
ok($kept <= 9_000_000 && $kept > 8_900_000,
   "a later write in the window keeps the TTL the first one set ($kept ms)");
is(one('rl:{t:cur}:w', 5), '0 0 1', 'this window: the 6th is rejected');
is(cmd('GET', 'rl:{t:cur}:w'), "$start:5:0", 'a rejected request writes nothing');

# the last window's count becomes the previous one, weighted
my $p = 10;
my $edge = floor($p * $f);                # the weighted previous count, rounded down
cmd('SET', 'rl:{t:last}:w', ($start - $w) . ":$p:3");
is(one('rl:{t:last}:w', $edge + 1), '0 0 1',
   sprintf('last window: %d requests weigh %.3f, a limit of %d rejects', $p, $p * $f, $edge + 1));
is(cmd('GET', 'rl:{t:last}:w'), ($start - $w) . ":$p:3", 'last window: nothing written on rejection');
is(one('rl:{t:last}:w', $edge + 2), '1 0 0', sprintf('last window: a limit of %d admits', $edge + 2));
is(cmd('GET', 'rl:{t:last}:w'), "$start:1:$p",
   'the window rolled in place: the last count is now the previous one');

# an older window counts nothing
cmd('SET', 'rl:{t:old}:w', ($start - 2 * $w) . ":$p:$p");
is(one('rl:{t:old}:w', 1), '1 0 0', 'two windows ago: counts nothing, a limit of 1 admits');
is(cmd('GET', 'rl:{t:old}:w'), "$start:1:0", 'two windows ago: the previous count is 0');

# this window with a previous count: both weigh
cmd('SET', 'rl:{t:both}:w', "$start:2:$p");
is(one('rl:{t:both}:w', $edge + 3), '0 0 1', 'this window with a previous count: both weigh');
is(one('rl:{t:both}:w', $edge + 4), '1 0 0', 'one more of limit admits');
is(cmd('GET', 'rl:{t:both}:w'), "$start:3:$p", 'the previous count stays');

# what Redis would not have written counts as nothing
cmd('SET', 'rl:{t:junk}:w', 'hello');
is(one('rl:{t:junk}:w', 2), '1 1 0', 'a value of another format counts as nothing');
is(cmd('GET', 'rl:{t:junk}:w'), "$start:1:0", 'and is replaced');

# the first write in a window sets the TTL to the end of the next window
my $end = $start + 2 * $w - $now;
for my $k (qw(last old junk)) {
    my $ttl = cmd('PTTL', "rl:{t:$k}:w");
    ok($ttl <= $end && $ttl > $end - 60_000,
       "first write in the window ($k): TTL to the end of the next one ($ttl ms)");
}

close $rs;

# 2. Through nginx
my $port = free_port();
my $d = start_nginx('one', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 3s; }
    ratelimit_redis_zone \$arg_k zone=z rate=5r/m pool=main;
    ratelimit_redis_zone \$arg_k zone=s rate=7r/s pool=main;
    server {
        listen 127.0.0.1:$port;
        location = /one { ratelimit_redis zone=z; empty_gif; }
        location = /two { ratelimit_redis zone=z; ratelimit_redis zone=s; empty_gif; }
    }
_EOC_

redis_cli($rp, 'flushall');
wait_window($rp, 60_000, 5_000);
is((get("http://127.0.0.1:$port/one?k=alice"))[0], 200, 'a request is admitted');
is((get("http://127.0.0.1:$port/one?k=alice"))[0], 200, 'and a second one');
my @keys = sort split /\n/, redis_cli($rp, '--scan');
is("@keys", 'rl:{z:alice}:60000', 'one key per zone and limited key, named rl:{ZONE:KEY}:WINDOW');
like(redis_cli($rp, 'get', "'rl:{z:alice}:60000'"), qr/^\d+:2:0$/, 'holding START:CURRENT:PREVIOUS');
my ($start1) = redis_cli($rp, 'get', "'rl:{z:alice}:60000'") =~ /^(\d+):/;
is($start1 % 60_000, 0, 'START is the start of the window');
my ($pttl) = redis_cli($rp, 'pttl', "'rl:{z:alice}:60000'") =~ /(\d+)/;
ok($pttl > 60_000 && $pttl <= 120_000, "its TTL runs to the end of the next window ($pttl ms)");

get("http://127.0.0.1:$port/two?k=bob");
@keys = sort split /\n/, redis_cli($rp, '--scan --pattern', "'rl:{?:bob}:*'");
is("@keys", 'rl:{s:bob}:1000 rl:{z:bob}:60000', 'two zones: a key each');

my $long = 'x' x 300;
get("http://127.0.0.1:$port/one?k=$long");
like(redis_cli($rp, '--scan --pattern', "'rl:{z:sha1:*'"), qr/^rl:\{z:sha1:[0-9a-f]{40}\}:60000$/,
     'a key longer than 256 bytes is named by its SHA-1');

errlog_clean($d, 'nginx');

done_testing();
