# ratelimit_redis's Redis layout, as the README documents it: the counters
# of one zone and window are the fields of one hash, rl:{ZONE}:START, a
# field per key, with a TTL and the marker field ""; a batch writes once
# per zone however many keys it holds; the hash of two windows ago is
# UNLINKed by the batch that starts a window; zones never share counters,
# and any key (binary, ':', '{}', 256 bytes, longer) is its own counter.

use strict;
use warnings;
use FindBin;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

our ($work, %redis);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

my $port = free_port();
my $d = start_nginx('layout', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 3s; }
    ratelimit_redis_zone \$arg_k zone=hour rate=100r/h pool=main;
    ratelimit_redis_zone \$arg_k zone=other rate=100r/h pool=main;
    ratelimit_redis_zone \$http_x_key zone=raw rate=2r/h pool=main;
    ratelimit_redis_zone \$arg_k zone=sec rate=100r/s pool=main;
    server {
        listen 127.0.0.1:$port;
        add_header X-Status \$ratelimit_redis_status always;
        location = /plain { empty_gif; }
        location = /hour { ratelimit_redis zone=hour; empty_gif; }
        location = /both { ratelimit_redis zone=hour; ratelimit_redis zone=other; empty_gif; }
        location = /raw { ratelimit_redis zone=raw; empty_gif; }
        location = /sec { ratelimit_redis zone=sec; empty_gif; }
    }
_EOC_
my $u = "http://127.0.0.1:$port";

sub redis_time_ms {
    my ($s, $us) = split /\n/, redis_cli($rp, 'time');
    return $s * 1000 + int($us / 1000);
}

sub hget {
    my ($key, $field) = @_;
    my $out = redis_cli($rp, "hget '$key' '$field'");
    chomp $out;
    return $out;
}

# --- one hash per zone and window, a field per key -----------------------
wait_window($rp, 3600, 5);
my $start = redis_time_ms();
$start -= $start % 3_600_000;
is((get("$u/hour?k=alice"))[0], 200, 'a request is admitted') for 1 .. 3;
is((get("$u/hour?k=bob"))[0], 200, 'another key too');
is(redis_cli($rp, "type 'rl:{hour}:$start'"), "hash\n",
   "the zone's counters of this window are one hash, rl:{hour}:$start");
is(hget("rl:{hour}:$start", 'alice'), 3, 'its field alice counts her 3 requests');
is(hget("rl:{hour}:$start", 'bob'), 1, 'its field bob his one');
is(redis_cli($rp, "hlen 'rl:{hour}:$start'"), "3\n",
   'nothing else in it but the marker field ""');
is(hget("rl:{hour}:$start", ''), 1, 'the marker');
my $ttl = redis_cli($rp, "pttl 'rl:{hour}:$start'");
my $end3 = $start + 3 * 3_600_000 - redis_time_ms();
ok($ttl > 0 && $ttl <= $end3 + 1000 && $ttl > $end3 - 60_000,
   "its TTL ends with the window after next ($ttl ms)") or diag("end3 $end3 start $start");
like(redis_cli($rp, "keys '*alice*'"), qr/^\s*$/, 'no Redis key per client');

# --- two zones, same key: two counters -----------------------------------
is((get("$u/both?k=alice"))[0], 200, 'two zones on one request');
is(hget("rl:{hour}:$start", 'alice'), 4, 'zone hour counts it');
is(hget("rl:{other}:$start", 'alice'), 1, 'zone other has its own counter');

# --- any key ---------------------------------------------------------------
# binary, ':', '{}', 256 bytes: each its own counter, limit 2 each; a key
# longer than 256 bytes is counted under its SHA-1
sub raw {
    my $key = shift;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp')
        or die $!;
    print $s "GET /raw HTTP/1.0\r\nX-Key: $key\r\n\r\n";
    my $head = '';
    while (my $line = <$s>) { last if $line eq "\r\n"; $head .= $line }
    close $s;
    my ($st) = $head =~ /^X-Status: (\w+)/mi;
    return $st // '';
}
my @keys = ("a:b", "a", "a:b:", "}:1", "{raw}:1", "\x01\x02\xff", "k" x 256,
            "k" x 257, "k" x 258);
my @got;
for my $k (@keys) {
    push @got, join ' ', map { raw($k) } 1 .. 3;
}
is_deeply(\@got, [('PASSED PASSED REJECTED') x @keys],
          'each of 9 awkward keys: 2 admitted, then rejected, none sharing');
my $h = "rl:{raw}:$start";
is(hget($h, 'a:b'), 2, "a key with ':' is a field as it is");
is(hget($h, 'k' x 256), 2, 'a key of 256 bytes too');
my $sha = `printf '%s' '@{["k" x 257]}' | sha1sum`;
($sha) = $sha =~ /^([0-9a-f]{40})/;
is(hget($h, "sha1:$sha"), 2, 'a longer one under sha1:HEX');
is(redis_cli($rp, "hlen '$h'"), (@keys + 1) . "\n", 'one field per key');

# --- one write per batch and zone ------------------------------------------
# 24 requests with 24 distinct keys at once: a handful of script calls,
# each writing with one HSET, not one write per key
sub burst {
    my @paths = @_;
    my @s = map {
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp') or die $!
    } @paths;
    for my $s (@s) {
        print $s "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n";
        my $head = '';
        while (my $line = <$s>) { last if $line eq "\r\n"; $head .= $line }
        my ($len) = $head =~ /^Content-Length: (\d+)/mi;
        read $s, my $body, $len if $len;
    }
    my ($worker) = worker_pids($d);
    kill 'STOP', $worker;
    for my $i (0 .. $#s) {
        print { $s[$i] } "GET $paths[$i] HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    }
    sleep 0.2;
    kill 'CONT', $worker;
    my @codes;
    for my $s (@s) {
        my $line = <$s> // '';
        push @codes, $line =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
        close $s;
    }
    return @codes;
}
{
    redis_cli($rp, 'config resetstat');
    my @codes = burst(map { "/hour?k=burst$_" } 1 .. 24);
    is(scalar(grep { $_ == 200 } @codes), 24, '24 distinct keys at once: all admitted');
    my $stats = redis_cli($rp, 'info commandstats');
    my ($calls) = $stats =~ /cmdstat_evalsha:calls=(\d+)/;
    my ($hset) = $stats =~ /cmdstat_hset:calls=(\d+)/;
    my ($writes) = 0;
    $writes += $1 while $stats =~ /cmdstat_(?:incrby|incr|set|pexpire|hincrby):calls=(\d+)/g;
    ok($calls && $calls <= 4, "decided in $calls script calls");
    is($hset // 0, $calls, 'one HSET per script call (one zone)');
    is($writes, 0, 'no other write per key');
    is(hget("rl:{hour}:$start", "burst$_"), 1, "burst$_ counted") for 1, 24;
}

# --- the roll: two windows later the old hash is UNLINKed -----------------
# windows of 1 s: a request in window S, one in S+1 s, one in S+2 s; the
# first batch of S+2 s removes rl:{sec}:S (its TTL would only end at
# S+3 s), and rl:{sec}:S+1 s stays: it is the previous window
sub in_window {     # waits for the start of a 1 s window, returns it
    for (1 .. 100) {
        my $now = redis_time_ms();
        return $now - $now % 1000 if $now % 1000 < 400;
        sleep 0.05;
    }
    return undef;
}
{
    my $s0 = in_window();
    is((get("$u/sec?k=roll"))[0], 200, 'window S: admitted');
    ok(redis_cli($rp, "exists 'rl:{sec}:$s0'") == 1, 'rl:{sec}:S exists');
    my ($s1, $s2);
    for (1 .. 40) { $s1 = in_window(); last if $s1 > $s0; sleep 0.1 }
    is($s1, $s0 + 1000, 'the next window');
    redis_cli($rp, 'config resetstat');
    is((get("$u/sec?k=roll"))[0], 200, 'window S+1 s: admitted');
    ok(redis_cli($rp, "exists 'rl:{sec}:$s0'") == 1, 'rl:{sec}:S is still there: it is the previous window');
    for (1 .. 40) { $s2 = in_window(); last if $s2 > $s1; sleep 0.1 }
    is($s2, $s1 + 1000, 'the window after');
    is((get("$u/sec?k=roll"))[0], 200, 'window S+2 s: admitted');
    my $now = redis_time_ms();
    ok(redis_cli($rp, "exists 'rl:{sec}:$s0'") == 0,
       'rl:{sec}:S is gone as soon as S+2 s starts (' . ($now - $s2) . ' ms into it), before its TTL');
    ok(redis_cli($rp, "exists 'rl:{sec}:$s1'") == 1, 'rl:{sec}:S+1 s stays');
    my ($unlink) = redis_cli($rp, 'info commandstats') =~ /cmdstat_unlink:calls=(\d+)/;
    ok(($unlink // 0) >= 1, 'by UNLINK (freed off the main thread)');
}

errlog_clean($d, 'nginx');

done_testing();
