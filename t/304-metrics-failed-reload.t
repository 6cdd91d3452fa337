# A reload that fails (a listen on a port another process holds) must leave
# the running configuration whole: a worker that dies afterwards (OOM kill,
# kill -9) is respawned by the master from the running configuration and
# must serve requests and /metrics, counting on the same series as before.
# Tried with health_zone resized (the new zone is unmapped again) and with
# it unchanged (the zone is reused, the new configuration's memory freed).

use strict;
use warnings;
use FindBin;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

our ($nginx, $work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

# everything inside http {}; $o{zone}: health_zone, $o{busy}: a listen that fails
sub body {
    my ($port, %o) = @_;
    my $zones = join '', map {
        "    ratelimit_redis_zone \$arg_k zone=$_ rate=1000r/s pool=main;\n"
    } @{ $o{zones} };
    my $locs = join '', map {
        "        location = /$_ { ratelimit_redis zone=$_; empty_gif; }\n"
    } @{ $o{zones} };
    my $busy = $o{busy}
        ? "    server { listen 127.0.0.1:$o{busy}; location / { empty_gif; } }\n" : '';
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
    health_zone $o{zone};
$zones
    server {
        listen 127.0.0.1:$port;
$locs
        location = /gif { empty_gif; }
        location = /metrics { health_metrics; }
    }
$busy
_EOC_
}

sub rewrite {
    my ($d, $body) = @_;
    local $/;
    open my $in, '<', "$d/nginx.conf" or die;
    my $text = <$in>;
    close $in;
    $text =~ s/(http \{.*?scgi_temp_path[^\n]*\n).*\}\s*$/$1$body}\n/s or die "config layout";
    open my $out, '>', "$d/nginx.conf" or die;
    print $out $text;
    close $out;
}

sub master_pid {
    my $d = shift;
    open my $f, '<', "$d/logs/nginx.pid" or return;
    my $pid = <$f>;
    chomp $pid;
    return $pid;
}

sub log_count {
    my ($d, $re) = @_;
    return errlog_has($d, $re);
}

# waits for the log line that ends a reload, failed or not
sub reload_and_wait {
    my ($d, $re) = @_;
    my $before = log_count($d, $re);
    kill 'HUP', master_pid($d);
    for (1 .. 150) {
        return 1 if log_count($d, $re) > $before;
        sleep 0.1;
    }
    return 0;
}

sub kill_worker_and_wait {
    my $d = shift;
    my @old = worker_pids($d);
    kill 'KILL', $old[0];
    for (1 .. 100) {
        my %old = map { $_ => 1 } @old;
        my @new = grep { !$old{$_} } worker_pids($d);
        return $new[0] if @new && !kill(0, $old[0]);
        sleep 0.05;
    }
    return;
}

sub metrics {
    my $port = shift;
    return scalar `curl -s -m 5 http://127.0.0.1:$port/metrics`;
}

sub metric {
    my ($m, $re) = @_;
    return $m =~ /^$re (\d+)$/m ? $1 : undef;
}

# nothing but what the test caused: the failed bind and the kill -9
sub log_clean {
    my ($d, $what, $busy) = @_;
    open my $f, '<', "$d/logs/error.log" or return fail("$what: no error log");
    my @bad = grep {
        /\[(alert|emerg|crit)\]|exited on signal|core dumped|open socket/
        && !/bind\(\) to 127\.0\.0\.1:$busy failed|still could not bind|exited on signal 9\b/
    } <$f>;
    ok(!@bad, "$what: error log has nothing but the failed bind and the kill -9")
        or diag(join '', @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    ok(!errlog_has($d, qr/exited on signal (?!9\b)/), "$what: no worker crashed");
}

for my $case (['1m', '2m', 'health_zone resized'], ['1m', '1m', 'health_zone unchanged']) {
    my ($from, $to, $what) = @$case;
    my $port = free_port();
    my $holder = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                       Listen => 1, ReuseAddr => 0) or die;
    my $busy = $holder->sockport;
    (my $name = "failed-$what") =~ s/\W+/-/g;

    my $d = start_nginx($name, body($port, zone => $from, zones => ['a']), workers => 2);
    get("http://127.0.0.1:$port/a?k=x") for 1 .. 3;
    is(metric(metrics($port), 'nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'),
       3, "$what: zone a counts 3 before the reload");

    # adds a zone and a server on the busy port: the reload fails
    rewrite($d, body($port, zone => $to, zones => ['b', 'a'], busy => $busy));
    ok(reload_and_wait($d, qr/still could not bind/),
       "$what: the reload fails on the busy port");
    sleep 0.5;

    # two workers die, one after the other, and are respawned
    for my $n (1, 2) {
        ok(kill_worker_and_wait($d), "$what: worker $n killed and respawned");
        my @codes = map { (get("http://127.0.0.1:$port/a?k=x"))[0] } 1 .. 5;
        is("@codes", '200 200 200 200 200', "$what: after kill $n, the respawned workers answer");
        my $m = metrics($port);
        like($m, qr/^nginx_scale_metrics_overflow_total 0$/m, "$what: after kill $n, /metrics answers");
        is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'),
           3 + 5 * $n, "$what: after kill $n, zone a goes on counting on its series");
        ok(!defined metric($m, 'nginx_ratelimit_redis_requests_total\{zone="b",result="passed"\}'),
           "$what: after kill $n, the zone of the failed configuration is not shown");
    }

    # the port is free again: the same configuration now loads
    close $holder;
    ok(reload_and_wait($d, qr/gracefully shutting down/), "$what: a reload that succeeds");
    sleep 0.5;
    get("http://127.0.0.1:$port/b?k=x") for 1 .. 2;
    get("http://127.0.0.1:$port/a?k=x");
    my $m = metrics($port);
    is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="a",result="passed"\}'),
       $from eq $to ? 14 : 1,
       $from eq $to ? "$what: zone a kept its count across the reload"
                    : "$what: a resized zone starts again");
    is(metric($m, 'nginx_ratelimit_redis_requests_total\{zone="b",result="passed"\}'), 2,
       "$what: the new zone b counts");

    ok(kill_worker_and_wait($d), "$what: a worker of the new configuration killed and respawned");
    my @codes = map { (get("http://127.0.0.1:$port/b?k=x"))[0] } 1 .. 3;
    is("@codes", '200 200 200', "$what: the respawned worker answers");
    is(metric(metrics($port), 'nginx_ratelimit_redis_requests_total\{zone="b",result="passed"\}'), 5,
       "$what: zone b counts on");

    my $t = `$nginx -t -p $d -c $d/nginx.conf 2>&1`;
    is($?, 0, "$what: nginx -t accepts the running configuration") or diag($t);

    log_clean($d, $what, $busy);
    stop_nginx($d);
}

done_testing();
