# ratelimit_redis's Redis layout, as the README documents it: the counts
# of one zone are the fields of one hash per generation of 4 windows,
# rl:{ZONE}:START, a field per key holding its record (the key's counts
# in window N of the generation and in the window before: the integer
# (PREV * 2^25 + CUR) * 4 + N, or "N:PREV:CUR" where the limit is from
# 2^25), with a TTL and
# the marker field ""; a batch writes once per zone however many keys it
# holds; a key's count of the last window of a generation carries into the
# next one; the previous generation's hash is UNLINKed once the first
# window of the next is over; zones never share counters, and any key
# (binary, ':', '{}', 256 bytes, longer) is its own counter.

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
    ratelimit_redis_zone \$arg_k zone=edge rate=33554431r/h pool=main;
    ratelimit_redis_zone \$arg_k zone=big rate=33554432r/h pool=main;
    server {
        listen 127.0.0.1:$port;
        add_header X-Status \$ratelimit_redis_status always;
        location = /plain { empty_gif; }
        location = /hour { ratelimit_redis zone=hour; empty_gif; }
        location = /both { ratelimit_redis zone=hour; ratelimit_redis zone=other; empty_gif; }
        location = /raw { ratelimit_redis zone=raw; empty_gif; }
        location = /sec { ratelimit_redis zone=sec; empty_gif; }
        location = /edge { ratelimit_redis zone=edge; empty_gif; }
        location = /big { ratelimit_redis zone=big; empty_gif; }
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

sub rec {           # a key's record, as "N:PREV:CUR"
    return record_text(hget(@_));
}

# --- one hash per zone and generation, a field per key --------------------
my $gen = 4;                    # windows per generation
my $hour = 3_600_000;
wait_window($rp, 3600, 5);
my $now = redis_time_ms();
my $start = $now - $now % ($gen * $hour);
my $n = int(($now - $start) / $hour);
is((get("$u/hour?k=alice"))[0], 200, 'a request is admitted') for 1 .. 3;
is((get("$u/hour?k=bob"))[0], 200, 'another key too');
is(redis_cli($rp, "type 'rl:{hour}:$start'"), "hash\n",
   "the zone's counts of this generation are one hash, rl:{hour}:$start");
is(rec("rl:{hour}:$start", 'alice'), "$n:0:3",
   "its field alice holds her 3 requests of window $n of the generation");
is(rec("rl:{hour}:$start", 'bob'), "$n:0:1", 'its field bob his one');
is(hget("rl:{hour}:$start", 'alice'), record_value($n, 0, 3),
   'held as the integer (PREV * 2^25 + CUR) * 4 + N: the limit is below 2^25');
is(redis_cli($rp, "hlen 'rl:{hour}:$start'"), "3\n",
   'nothing else in it but the marker field ""');
is(hget("rl:{hour}:$start", ''), $n ? 1 : 0,
   'the marker: ' . ($n ? '1, the previous generation is not read any more'
                        : '0, the previous generation is still read'));
my $ttl = redis_cli($rp, "pttl 'rl:{hour}:$start'");
chomp $ttl;
my $end = $start + ($gen + 2) * $hour - redis_time_ms();
ok($ttl > 0 && $ttl <= $end + 1000 && $ttl > $end - 60_000,
   "its TTL ends one window after the next generation's first ($ttl ms)")
    or diag("end $end start $start");
like(redis_cli($rp, "keys '*alice*'"), qr/^\s*$/, 'no Redis key per client');

# --- two zones, same key: two counters -----------------------------------
is((get("$u/both?k=alice"))[0], 200, 'two zones on one request');
is(rec("rl:{hour}:$start", 'alice'), "$n:0:4", 'zone hour counts it');
is(rec("rl:{other}:$start", 'alice'), "$n:0:1", 'zone other has its own counter');

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
is(rec($h, 'a:b'), "$n:0:2", "a key with ':' is a field as it is");
is(rec($h, 'k' x 256), "$n:0:2", 'a key of 256 bytes too');
my $sha = `printf '%s' '@{["k" x 257]}' | sha1sum`;
($sha) = $sha =~ /^([0-9a-f]{40})/;
is(rec($h, "sha1:$sha"), "$n:0:2", 'a longer one under sha1:HEX');
is(redis_cli($rp, "hlen '$h'"), (@keys + 1) . "\n", 'one field per key');

# --- a value that is not a record ------------------------------------------
# anything written there that is not a record counts as no request: never a
# script error
my @junk = ('1:x:2', '-3', '2.5', '99999999999999999999', 'abc', '');
redis_cli($rp, "hset 'rl:{hour}:$start' " . join ' ', map { "junk$_ '$junk[$_]'" } 0 .. $#junk);
is(join(' ', map { (get("$u/hour?k=junk$_"))[0] } 0 .. $#junk), join(' ', (200) x @junk),
   'keys whose values are not records: admitted');
is(join(' ', map { rec("rl:{hour}:$start", "junk$_") } 0 .. $#junk),
   join(' ', ("$n:0:1") x @junk), 'each counted from nothing: ' . join(', ', map { "'$_'" } @junk));
# --- limits from 2^25: records as text -------------------------------------
# counts never pass a zone's limit, so below 2^25 a record is an integer;
# from 2^25 it is the text N:PREV:CUR.  Either is read in any zone: a
# reload that moves a rate across 2^25 keeps the counts.
for my $z (['edge', 2**25 - 1, 1], ['big', 2**25, 0]) {
    my ($zone, $limit, $packed) = @$z;
    is((get("$u/$zone?k=a"))[0], 200, "limit $limit: admitted");
    is(hget("rl:{$zone}:$start", 'a'), $packed ? record_value($n, 0, 1) : "$n:0:1",
       "limit $limit: the record is " . ($packed ? 'an integer' : 'text'));
    redis_cli($rp, "hset 'rl:{$zone}:$start' b '"
              . ($packed ? "$n:0:5" : record_value($n, 0, 5)) . "'");
    is((get("$u/$zone?k=b"))[0], 200, "limit $limit: admitted");
    is(hget("rl:{$zone}:$start", 'b'), $packed ? record_value($n, 0, 6) : "$n:0:6",
       'the record in the other form read: its 5 requests and this one');
}

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
    is(rec("rl:{hour}:$start", "burst$_"), "$n:0:1", "burst$_ counted") for 1, 24;
}

# --- the roll -----------------------------------------------------------------
# windows of 1 s, generations of 4 s: a request in the last window of
# generation P, one in the first window of the next generation G, one in
# its second.  The first window of G still reads P's hash (the count of
# P's last window is its previous window); the first batch after it
# UNLINKs P's hash (its TTL would end later).
sub in_window {     # waits until a 1 s window that is window N of its generation starts
    my $want = shift;
    for (1 .. 200) {
        my $now = redis_time_ms();
        my $start = $now - $now % 1000;
        return $start if $now % 1000 < 400 && ($start / 1000) % $gen == $want;
        sleep 0.05;
    }
    return undef;
}
{
    my $w3 = in_window($gen - 1);
    my $p = $w3 - ($gen - 1) * 1000;
    my $g = $p + $gen * 1000;
    ok(defined $w3, 'the last window of a generation');
    is((get("$u/sec?k=roll"))[0], 200, 'admitted');
    is(rec("rl:{sec}:$p", 'roll'), ($gen - 1) . ':0:1', 'counted in its generation');
    my $w0 = in_window(0);
    is($w0, $g, 'the first window of the next generation');
    redis_cli($rp, 'config resetstat');
    is((get("$u/sec?k=roll"))[0], 200, 'admitted');
    is(rec("rl:{sec}:$g", 'roll'), '0:1:1',
       "counted in the new generation, the last one's count as its previous window's");
    is(hget("rl:{sec}:$g", ''), 0, 'the marker says the previous generation is still read');
    ok(redis_cli($rp, "exists 'rl:{sec}:$p'") == 1, "so the previous generation's hash stays");
    my $pttl = redis_cli($rp, "pttl 'rl:{sec}:$g'");
    chomp $pttl;
    my $end = $g + ($gen + 2) * 1000 - redis_time_ms();
    ok($pttl > $end - 200 && $pttl <= $end + 50, "TTL to one window after the next generation's first ($pttl ms)");
    my $w1 = in_window(1);
    is($w1, $g + 1000, 'the second window of the generation');
    is((get("$u/sec?k=roll"))[0], 200, 'admitted');
    my $now = redis_time_ms();
    is(rec("rl:{sec}:$g", 'roll'), '1:1:1', 'the window before is counted as the previous one');
    ok(redis_cli($rp, "exists 'rl:{sec}:$p'") == 0,
       "the previous generation's hash is gone as soon as the second window starts ("
       . ($now - $w1) . ' ms into it), before its TTL');
    is(hget("rl:{sec}:$g", ''), 1, 'and the marker says so');
    my ($unlink) = redis_cli($rp, 'info commandstats') =~ /cmdstat_unlink:calls=(\d+)/;
    ok(($unlink // 0) >= 1, 'by UNLINK (freed off the main thread)');
}

errlog_clean($d, 'nginx');

done_testing();
