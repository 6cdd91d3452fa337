# ratelimit_redis batching: one script call decides many requests, and
# consecutive requests with the same zones and keys travel as one run.
# The answers must be those of one call per request, in arrival order.
#
# 1. The script itself, against Redis: random batches (several zones,
#    dry_run, repeated keys, previous-window counts) give what the same
#    requests give one call each.
# 2. Through nginx: concurrent requests for one key are decided in runs,
#    exactly the limit is admitted and each admitted request has its own
#    X-RateLimit-Remaining.

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

# the script, as the module sends it
my $script = do {
    open my $f, '<', "$FindBin::Bin/../src/ngx_http_ratelimit_redis_batch.c" or die $!;
    local $/;
    my $src = <$f>;
    my ($body) = $src =~ /ngx_http_ratelimit_redis_script = \{\s*ngx_string\((.*?)\),\s*\{ 0 \}/s
        or die "script not found";
    join '', map { s/\\n/\n/g; s/\\"/"/g; s/\\\\/\\/g; $_ } $body =~ /"((?:[^"\\]|\\.)*)"/g;
};

# a small RESP client: one connection, one command at a time
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

# the script as a Redis whose C long has 32 bits runs it: string.format
# cannot write the integer records there, so it writes text
(my $narrow = $script) =~ s/^local wide = .*$/local wide = false/m
    or die "the integer check not found";
my $sha_wide = $sha;
my $sha_narrow = cmd('SCRIPT', 'LOAD', $narrow);

# windows long enough that no boundary falls inside the test
my %zone = (
    a => { limit => 3,  window => 10_000_000_000 },
    b => { limit => 7,  window => 10_000_000_000 },
    c => { limit => 2,  window => 20_000_000_000 },
    d => { limit => 2**25 + 3, window => 10_000_000_000 },   # records as text
);

# The reference: the sliding window written plainly, one request per call.
# KEYS: a base key per zone; ARGV: limit, window, dry run per zone.
# ARGV[3 * #KEYS + 1], if given, is the time (ms) to decide at.
my $reference = cmd('SCRIPT', 'LOAD', <<'_LUA_');
local t = redis.call('TIME')
local now = tonumber(ARGV[3 * #KEYS + 1]) or t[1] * 1000 + math.floor(t[2] / 1000)
local out, cur, ok, admit = {0}, {}, {}, 1
for z = 1, #KEYS do
  local l, w = tonumber(ARGV[3 * z - 2]), tonumber(ARGV[3 * z - 1])
  local e = now % w
  cur[z] = KEYS[z] .. (now - e)
  local c = tonumber(redis.call('GET', cur[z])) or 0
  local p = tonumber(redis.call('GET', KEYS[z] .. (now - e - w))) or 0
  local est = p * (w - e) / w + c
  if est + 1 > l then
    local retry
    if c + 1 > l then
      retry = w - e + w - math.floor((l - 1) * w / c)
    else
      retry = w - math.floor((l - c - 1) * w / p) - e
    end
    out[#out + 1], out[#out + 2] = 0, 0
    out[#out + 1], out[#out + 2] = retry > 0 and retry or 1, w - e
    if ARGV[3 * z] ~= '1' then admit = 0 end
  else
    ok[z] = true
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] =
      1, math.floor(l - est), 0, w - e
  end
end
out[1] = admit
if admit == 1 then
  for z = 1, #KEYS do
    if ok[z] then
      redis.call('INCR', cur[z])
      out[4 * z - 1] = out[4 * z - 1] - 1
    end
  end
end
return out
_LUA_

sub reference {
    my ($prefix, $req, $now) = @_;
    return cmd('EVALSHA', $reference, scalar @$req,
               (map { "$prefix:$_->[0]:$_->[1]:" } @$req),
               (map { ($zone{ $_->[0] }{limit}, $zone{ $_->[0] }{window}, $_->[2]) } @$req),
               defined $now ? $now : ());
}


# a request: [[zone, key, dry], ...]; the batch as the module encodes it:
# a key per zone of the batch (the start of its hashes' names); per zone
# its limit, window and number of distinct keys; the distinct keys zone by
# zone; then the runs in one string of bytes: per run its size, its number
# of zones and per zone 2 * (the key's place among the distinct keys) +
# dry run, in two bytes
my @last_zones;     # the zones of the last call, in the order of its resets
my $last_reply;
sub call {
    my ($prefix, @reqs) = @_;
    my (@zones, %fields, @args);
    for my $run (runs(@reqs)) {
        for my $z (@{ $reqs[$run->[0]] }) {
            push @zones, $z->[0] unless $fields{ $z->[0] };
            my $f = $fields{ $z->[0] } //= [];
            push @$f, $z->[1] unless grep { $_ eq $z->[1] } @$f;
        }
    }
    my (%place, @distinct);
    for my $z (@zones) {
        for my $k (@{ $fields{$z} }) {
            $place{"$z\0$k"} = @distinct;
            push @distinct, $k;
        }
    }
    my $runs = '';
    for my $run (runs(@reqs)) {
        my $req = $reqs[$run->[0]];
        $runs .= pack('CC', $run->[1], scalar @$req);
        $runs .= pack('n', 2 * $place{"$_->[0]\0$_->[1]"} + $_->[2]) for @$req;
    }
    @last_zones = @zones;
    return unfold(cmd('EVALSHA', $sha, scalar @zones,
                      (map { "$prefix:$_:" } @zones), scalar @zones,
                      (map { ($zone{$_}{limit}, $zone{$_}{window},
                              scalar @{ $fields{$_} }) } @zones),
                      @distinct, $runs),
                  \@zones, @reqs);
}

# per request: admitted, then per zone admitted, remaining, retry, reset,
# from the per-run answer (as ngx_http_ratelimit_redis_batch_verdict())
sub unfold {
    my ($r, $zones, @reqs) = @_;
    $last_reply = $r;
    my %reset;
    @reset{@$zones} = @$r[0 .. $#$zones];
    my @out;
    my $k = @$zones;
    for my $run (runs(@reqs)) {
        my $req = $reqs[$run->[0]];
        my $n = @$req;
        if ($run->[1] == 1) {
            # one request: per zone remaining if admitted, else -retry
            my @x = @$r[$k .. $k + $n - 1];
            my $admitted = 1;
            $x[$_] < 0 && !$req->[$_][2] and $admitted = 0 for 0 .. $n - 1;
            push @out, $admitted;
            for my $j (0 .. $n - 1) {
                my $reset = $reset{ $req->[$j][0] };
                if ($x[$j] >= 0) {
                    my $rem = $x[$j] - $admitted;
                    push @out, 1, ($rem > 0 ? $rem : 0), 0, $reset;
                } else {
                    push @out, 0, 0, -$x[$j], $reset;
                }
            }
            $k += $n;
            next;
        }
        my $admitted = $r->[$k];
        for my $q (0 .. $run->[1] - 1) {
            my $before = $q < $admitted ? $q : $admitted;
            push @out, $q < $admitted ? 1 : 0;
            for my $j (0 .. $n - 1) {
                my ($a, $left, $retry) = @$r[$k + 1 + 3 * $j .. $k + 3 + 3 * $j];
                my $reset = $reset{ $req->[$j][0] };
                if ($q < $a) {
                    my $rem = $left - $before - ($q < $admitted ? 1 : 0);
                    push @out, 1, ($rem > 0 ? $rem : 0), 0, $reset;
                } else {
                    push @out, 0, 0, $retry, $reset;
                }
            }
        }
        $k += 1 + 3 * $n;
    }
    die "reply of " . @$r . " numbers, expected $k" unless $k == @$r;
    return \@out;
}

# [first, length] of each run of consecutive identical requests
sub runs {
    my @reqs = @_;
    my @runs;
    for my $i (0 .. $#reqs) {
        if (@runs && same($reqs[$runs[-1][0]], $reqs[$i])) {
            $runs[-1][1]++;
        } else {
            push @runs, [$i, 1];
        }
    }
    return @runs;
}

sub same {
    my ($x, $y) = @_;
    return 0 unless @$x == @$y;
    for my $j (0 .. $#$x) {
        return 0 if join("\0", @{ $x->[$j] }) ne join("\0", @{ $y->[$j] });
    }
    return 1;
}

# previous-window counts, the same for both: the reference keeps one
# counter per zone, key and window, the module a record per key in the
# hash of its generation of $gen windows (README, *Redis key layout*): the
# previous window is N - 1 of this generation, or the last one of the
# previous generation.  Seeded as the integer or as the text N:PREV:CUR,
# one trial each: any zone reads both
my ($gen) = $script =~ /local K = (\d+)/ or die "generation length not found";
sub seed {
    my ($batch, $single, $prev, $text) = @_;
    my ($s) = @{ cmd('TIME') };
    my $now = $s * 1000;
    for my $k (keys %$prev) {
        my ($z, $key) = split /:/, $k;
        my $w = $zone{$z}{window};
        my $start = $now - $now % $w - $w;
        cmd('SET', "$single:$z:$key:$start", $prev->{$k}, 'PX', 600_000);
        my $g = $start - $start % ($gen * $w);
        my $n = ($start - $g) / $w;
        cmd('HSET', "$batch:$z:$g", $key,
            $text ? "$n:0:$prev->{$k}" : record_value($n, 0, $prev->{$k}));
        cmd('PEXPIRE', "$batch:$z:$g", 600_000);
    }
}

srand(160);
my ($trials, $bad) = (300, 0);
my ($runs, $maxrun) = (0, 0);

for my $trial (1 .. $trials) {
    my @reqs;
    my $n = 1 + int(rand(40));
    my @shapes = map {
        my @z = grep { rand() < 0.6 } qw(a b c d);
        @z = ('a') unless @z;
        [map { [$_, ('k1', 'k2')[int(rand(2))], (rand() < 0.2 ? 1 : 0)] } @z];
    } 1 .. 3;
    while (@reqs < $n) {
        my $s = $shapes[int(rand(@shapes))];
        push @reqs, ($s) x (1 + int(rand(6)));
    }
    splice @reqs, $n;

    my %prev;
    $prev{"$_:k1"} = int(rand(4)) for grep { rand() < 0.5 } qw(a b c d);
    seed("t$trial:batch", "t$trial:single", \%prev, $trial % 2);

    my $batch = call("t$trial:batch", @reqs);
    my @single = map { @{ reference("t$trial:single", $_) } } @reqs;

    # all exactly but reset, which moves with the milliseconds that passed
    # between the two; a retry is compared as retry - reset, which does not
    my $ok = @$batch == @single;
    for my $i (0 .. $#single) {
        last unless $ok;
        my $field = $i;
        for my $r (@reqs) {
            last if $field < 1 + 4 * @$r;
            $field -= 1 + 4 * @$r;
        }
        my ($x, $y) = ($batch->[$i], $single[$i]);
        if ($field && $field % 4 == 0) {               # reset
            $ok = 0 if abs($x - $y) > 5000;
        } elsif ($field && $field % 4 == 3 && $x && $y) {   # retry
            $ok = 0 if $x - $batch->[$i + 1] != $y - $single[$i + 1];
        } else {
            $ok = 0 if $x != $y;
        }
    }
    unless ($ok) {
        $bad++;
        diag("trial $trial differs:\n batch  @$batch\n single @single") if $bad <= 3;
    }

    for my $run (runs(@reqs)) {
        $runs++ if $run->[1] > 1;
        $maxrun = $run->[1] if $run->[1] > $maxrun;
    }
}

is($bad, 0, "$trials random batches answer as one call per request would");
ok($runs > 100 && $maxrun >= 6, "the batches held runs ($runs, the longest $maxrun)");

# Across windows and generations: zones of 200 ms and 300 ms windows
# (generations of 0.8 s and 1.2 s), random batches for about 4 s.  The
# reference decides each request at the moment the batch was decided
# (from the batch's reset and TIME around it), one counter per window, so
# the answers must match exactly, reset included: the counts of the
# previous window carry over, from the previous generation's hash too,
# and nothing is removed while it is still read.
{
    local @zone{qw(r s)} = ({ limit => 4, window => 200 }, { limit => 6, window => 300 });
    my ($trials, $bad, $decided, $firsts) = (0, 0, 0, 0);
    my (%seen, %form);
    my $until = time + 4;
    while (time < $until && $trials < 400) {
        $trials++;
        sleep 0.005 + rand(0.015);
        my @shapes = map {
            my @z = grep { rand() < 0.7 } qw(r s);
            @z = ('r') unless @z;
            [map { [$_, ('k1', 'k2', 'k3')[int(rand(3))], (rand() < 0.15 ? 1 : 0)] } @z];
        } 1 .. 3;
        my @reqs;
        push @reqs, $shapes[int(rand(@shapes))] for 1 .. 1 + int(rand(10));
        # the records written in both forms, each read by the other
        $sha = rand() < 0.5 ? $sha_narrow : $sha_wide;
        my ($s0, $u0) = @{ cmd('TIME') };
        my $batch = call('roll:batch', @reqs);
        my ($s1, $u1) = @{ cmd('TIME') };
        my ($t0, $t1) = ($s0 * 1000 + int($u0 / 1000), $s1 * 1000 + int($u1 / 1000));

        # the moment the batch was decided: within [t0, t1], w - reset
        # into its window, for every zone of the batch
        my %reset;
        @reset{@last_zones} = @$last_reply[0 .. $#last_zones];
        my $now;
        for my $t ($t0, $t1) {
            my $w = $zone{ $last_zones[0] }{window};
            my $c = $t - $t % $w + $w - $reset{ $last_zones[0] };
            $now = $c if $c >= $t0 && $c <= $t1;
        }
        unless (defined $now
                && !grep { $zone{$_}{window} - $now % $zone{$_}{window} != $reset{$_} } @last_zones)
        {
            $bad++;
            diag("batch $trials: no moment in [$t0, $t1] fits the resets @{[%reset]}") if $bad <= 3;
            next;
        }
        $decided++;
        for my $z (@last_zones) {
            my $w = $zone{$z}{window};
            my $g = $now - $now % ($gen * $w);
            $firsts++ if $now - $g < $w && !$seen{"$z:$g"}++;
            my $v = cmd('HGET', "roll:batch:$z:$g", 'k1');
            $form{ $v =~ /:/ ? 'text' : 'integer' }++ if defined $v;
        }
        my @single = map { @{ reference('roll:single', $_, $now) } } @reqs;
        if ("@$batch" ne "@single") {
            $bad++;
            diag("at $now ms:\n batch  @$batch\n single @single") if $bad <= 3;
        }
    }
    is($bad, 0, "$decided batches over 4 s of rolling windows answer as one call per request would");
    ok($firsts >= 4, "$firsts of them began a generation's first window");
    ok(($form{text} // 0) > 20 && ($form{integer} // 0) > 20,
       'the records were written in both forms, each read by the other ('
       . join(', ', map { "$_ " . ($form{$_} // 0) } qw(text integer)) . ')');
    $sha = $sha_wide;
}

# rejected requests are not counted: the stored counts equal the admitted
{
    my @reqs = ([['a', 'x', 0]]) x 10;
    my $r = call('count', @reqs);
    my $admitted = grep { $_ } map { $r->[5 * $_] } 0 .. 9;
    is($admitted, 3, 'a run of 10 against a limit of 3 admits 3');
    my @remaining = map { $r->[5 * $_ + 2] } 0 .. 2;
    is("@remaining", '2 1 0', 'each admitted request has its own remaining');
    my ($s) = @{ cmd('TIME') };
    my $w = $zone{a}{window};
    my $start = $s * 1000 - ($s * 1000) % $w;
    my $g = $start - $start % ($gen * $w);
    like(record_text(cmd('HGET', "count:a:$g", 'x')), qr/^\d+:0:3$/,
         'Redis counted the admitted only');
}

close $rs;

# 2. Through nginx: 24 requests at once for one key, limit 10.
my $port = free_port();
my $d = start_nginx('one', <<"_EOC_");
    redis_pool main { server 127.0.0.1:$rp; timeout 3s; }
    ratelimit_redis_zone \$arg_k zone=run rate=10r/h pool=main;
    ratelimit_redis_zone \$arg_k zone=shadow rate=4r/h pool=main;
    ratelimit_redis_headers legacy;
    server {
        listen 127.0.0.1:$port;
        add_header X-Status \$ratelimit_redis_status always;
        location = /plain { empty_gif; }
        location = /one { ratelimit_redis zone=run; empty_gif; }
        location = /two { ratelimit_redis zone=run; ratelimit_redis zone=shadow dry_run; empty_gif; }
    }
_EOC_

# 24 keep-alive connections, each warmed up with a plain request; then
# the worker is stopped while the 24 limited requests are written, so it
# reads them all in one event loop iteration.
sub burst {
    my @paths = @_;
    my @s = map {
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp') or die $!
    } @paths;
    for my $s (@s) {
        print $s "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n";
        response($s);
    }
    my ($worker) = worker_pids($d);
    kill 'STOP', $worker;
    for my $i (0 .. $#s) {
        print { $s[$i] } "GET $paths[$i] HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    }
    sleep 0.2;
    kill 'CONT', $worker;
    my @out = map { [response($_)] } @s;
    close $_ for @s;
    return @out;
}

# (status, X-RateLimit-Remaining, X-Status) of one response
sub response {
    my $s = shift;
    my $head = '';
    while (my $line = <$s>) {
        last if $line eq "\r\n";
        $head .= $line;
    }
    my ($len) = $head =~ /^Content-Length: (\d+)/mi;
    read $s, my $body, $len if $len;
    my ($code) = $head =~ m{^HTTP/1\.\d (\d+)};
    my ($rem) = $head =~ /^X-RateLimit-Remaining: (\d+)/mi;
    my ($st) = $head =~ /^X-Status: (\w+)/mi;
    return ($code || 0, $rem, $st // '');
}

sub statuses {
    my %n;
    $n{ $_->[2] }++ for @_;
    return join ' ', map { "$_=$n{$_}" } sort keys %n;
}

{
    redis_cli($rp, 'config resetstat');
    my @out = burst(('/one?k=burst1') x 24);
    my @ok = grep { $_->[0] == 200 } @out;
    is(scalar @ok, 10, 'one zone: 24 requests at once, exactly 10 admitted');
    is(scalar(grep { $_->[0] == 429 } @out), 14, 'one zone: the other 14 answered 429');
    is(join(' ', sort { $a <=> $b } map { $_->[1] // 'none' } @ok),
       '0 1 2 3 4 5 6 7 8 9', 'one zone: every admitted request has its own remaining');
    my $calls = evalsha_calls($rp);
    ok($calls <= 3, "one zone: decided in $calls script calls");
}

{
    my @out = burst(('/two?k=burst2') x 24);
    is(statuses(@out), 'PASSED=4 REJECTED=14 REJECTED_DRY_RUN=6',
       'with a dry_run zone: 4 pass both, 6 only the enforced zone, 14 neither');
    is(join(' ', sort { $a <=> $b } map { $_->[1] // 'none' }
                 grep { $_->[0] == 200 } @out),
       '0 0 0 0 0 0 0 1 2 3', 'with a dry_run zone: remaining is the tightest zone\'s');
}

{
    # runs of three, two keys taking turns: runs end where the key changes
    my @paths = map { ('/one?k=mix' . ($_ % 2)) x 3 } 1 .. 8;
    my @out = burst(@paths);
    my %ok;
    $ok{ $paths[$_] }++ for grep { $out[$_][0] == 200 } 0 .. $#out;
    is(join(' ', map { "$_=" . ($ok{$_} // 0) } sort keys %ok),
       '/one?k=mix0=10 /one?k=mix1=10', 'two keys in turns: each admits its own 10');
}

errlog_clean($d, 'nginx');

done_testing();
