# nginx_redis_up{pool} with several workers: each worker keeps its own
# connection, so the gauge says 1 only while every worker's connection
# answers PING, and nginx_redis_up_workers{pool} says how many do.  Every
# scrape, whichever worker answers it, gives the same answer.
#
# One worker is cut off deterministically: Redis' maxclients is lowered to
# what is connected once that worker's connection is killed, so its
# reconnects are refused ("max number of clients reached") while the other
# worker keeps its connection.  This test's own admin connection stays open
# all along to lift the limit again.

use strict;
use warnings;
use FindBin;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

our ($work);
require "$FindBin::Bin/helpers/scale.pl";
need_module_and_redis();

my $rp = free_port();
start_redis($rp);

my $admin = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$rp") or die "admin: $!";

sub reply {
    my $line = <$admin>;
    die "redis closed the admin connection" unless defined $line;
    $line =~ s/\r\n$//;
    my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $t eq '+' || $t eq ':';
    return "ERR $rest" if $t eq '-';
    if ($t eq '$') {
        return undef if $rest < 0;
        my $buf = '';
        read($admin, $buf, $rest + 2) == $rest + 2 or die "short read";
        return substr($buf, 0, $rest);
    }
    if ($t eq '*') {
        return [map { reply() } 1 .. $rest];
    }
    die "unexpected reply $line";
}

sub cmd {
    my @a = @_;
    print $admin '*' . @a . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
    return reply();
}

my $admin_id = cmd('CLIENT', 'ID');

# the connections of nginx workers: id, age
sub worker_clients {
    my @c;
    for (split /\n/, cmd('CLIENT', 'LIST')) {
        my %f = map { split /=/, $_, 2 } split ' ';
        next if $f{id} == $admin_id;
        push @c, \%f;
    }
    return sort { $b->{age} <=> $a->{age} || $a->{id} <=> $b->{id} } @c;
}

sub conf {
    my ($port, %o) = @_;
    my $slow = $o{slow} ? "        location = /slow { proxy_pass http://127.0.0.1:$o{slow}; proxy_read_timeout 30s; }\n" : '';
    return <<"_EOC_";
    redis_pool main { server 127.0.0.1:$rp; timeout 1s; }
    server {
        listen 127.0.0.1:$port;
        location = /metrics { health_metrics; }
$slow
    }
_EOC_
}

sub rewrite {
    my ($d, $body, $workers) = @_;
    local $/;
    open my $in, '<', "$d/nginx.conf" or die;
    my $text = <$in>;
    close $in;
    $text =~ s/(http \{.*?scgi_temp_path[^\n]*\n).*\}\s*$/$1$body}\n/s or die "config layout";
    $text =~ s/worker_processes \d+;/worker_processes $workers;/ or die;
    open my $out, '>', "$d/nginx.conf" or die;
    print $out $text;
    close $out;
}

sub reload {
    my $d = shift;
    my $before = errlog_has($d, qr/gracefully shutting down/);
    nginx_signal($d, 'reload');
    for (1 .. 100) {
        last if errlog_has($d, qr/gracefully shutting down/) > $before;
        sleep 0.05;
    }
}

# (nginx_redis_up, nginx_redis_up_workers) of one scrape
sub scrape {
    my $port = shift;
    my $m = `curl -s -m 5 http://127.0.0.1:$port/metrics`;
    my ($up) = $m =~ /^nginx_redis_up\{pool="main"\} (\d+)$/m;
    my ($n) = $m =~ /^nginx_redis_up_workers\{pool="main"\} (\d+)$/m;
    return (($up // 'none') . '/' . ($n // 'none'), $m);
}

# waits until a scrape says $want (at most $secs seconds)
sub wait_for {
    my ($port, $want, $secs) = @_;
    my $t = time + $secs;
    my $got;
    while (time < $t) {
        ($got) = scrape($port);
        return $got if $got eq $want;
        sleep 0.1;
    }
    return $got;
}

# $n scrapes, $gap seconds apart: what they said, joined
sub scrapes {
    my ($port, $n, $gap) = @_;
    my %seen;
    for (1 .. $n) { my ($s) = scrape($port); $seen{$s}++; sleep $gap }
    return join ',', sort keys %seen;
}

my $port = free_port();
my $d = start_nginx('up', conf($port), workers => 2);

is(wait_for($port, '1/2', 5), '1/2', 'two workers connected: up 1, 2 workers up');
my (undef, $m) = scrape($port);
like($m, qr/^# HELP nginx_redis_up .*every worker/m, 'the HELP of nginx_redis_up says it is about every worker');
like($m, qr/^# TYPE nginx_redis_up_workers gauge$/m, 'nginx_redis_up_workers is a gauge');
is(scrapes($port, 12, 0.1), '1/2', 'twelve scrapes agree');

# cut one worker off
my @c = worker_clients();
is(scalar @c, 2, 'Redis sees one connection per worker');
is(cmd('CONFIG', 'SET', 'maxclients', 2), 'OK', 'maxclients 2: the admin connection and one worker');
like(cmd('CLIENT', 'KILL', 'ID', $c[0]{id}), qr/^1$/, "one worker's connection killed");

is(wait_for($port, '0/1', 5), '0/1', 'one worker cannot reconnect: up 0, 1 worker up');
# spans several PING rounds (1 s) of both workers
is(scrapes($port, 25, 0.1), '0/1', 'for 2.5 s every scrape, from either worker, says 0/1');
ok(errlog_has($d, qr/max number of clients reached|redis pool "main" is down/),
   'the cut-off worker logs why');

# lift the limit: the worker reconnects (backoff at most 1 s)
is(cmd('CONFIG', 'SET', 'maxclients', 10000), 'OK', 'maxclients lifted');
is(wait_for($port, '1/2', 5), '1/2', 'both up again: 1/2');
is(scrapes($port, 8, 0.1), '1/2', 'and every scrape agrees');

# a worker killed with -9 is respawned and takes its own word again
my @w = worker_pids($d);
kill 'KILL', $w[0];
my %old = map { $_ => 1 } @w;
my $respawned;
for (1 .. 100) { ($respawned) = grep { !$old{$_} } worker_pids($d); last if $respawned; sleep 0.05 }
ok($respawned, 'the killed worker is respawned');
is(wait_for($port, '1/2', 5), '1/2', 'after the respawn: 1/2');
is(scrapes($port, 8, 0.1), '1/2', 'and it stays so');

# more workers: the count follows the new configuration
rewrite($d, conf($port), 3);
reload($d);
is(wait_for($port, '1/3', 5), '1/3', 'worker_processes 3: 1/3');
is(scrapes($port, 8, 0.1), '1/3', 'every scrape agrees');

# old workers kept running by a slow request
my $slow = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8,
                                 ReuseAddr => 1) or die;
my $slow_port = $slow->sockport;
my $pid = fork // die;
if ($pid == 0) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $slow->accept) {
        next if fork;
        my $req = '';
        while (<$c>) { $req .= $_; last if /^\r?\n$/ }
        sleep 4;
        print $c "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}
close $slow;

sub hold {
    my $h = fork // die;
    if ($h == 0) { `curl -s -m 15 http://127.0.0.1:$port/slow`; POSIX::_exit(0) }
    sleep 0.5;
    return $h;
}

rewrite($d, conf($port, slow => $slow_port), 3);
reload($d);
is(wait_for($port, '1/3', 5), '1/3', 'a reload with a /slow location: 1/3');
my @held = (hold());
my @clients;

# fewer workers while an old one finishes its request
rewrite($d, conf($port, slow => $slow_port), 1);
reload($d);
is(wait_for($port, '1/1', 5), '1/1', 'worker_processes 1: 1/1, the old workers do not count');
@clients = worker_clients();
cmp_ok(scalar @clients, '>=', 2, 'while an old worker is still connected');

# the same number of workers: old and new worker 0 share a word
push @held, hold();
reload($d);
is(wait_for($port, '1/1', 5), '1/1', 'a reload with the same workers: 1/1');
@clients = worker_clients();
my ($newest) = sort { $b <=> $a } map { $_->{id} } @clients;
my @old = grep { $_->{id} != $newest } @clients;
cmp_ok(scalar @old, '>=', 2, 'the old workers are still connected');

# an old worker that loses its connection while it shuts down writes nothing
cmd('CLIENT', 'KILL', 'ID', $_->{id}) for @old;
is(scrapes($port, 10, 0.05), '1/1', 'old workers losing their connections change nothing');

waitpid($_, 0) for @held;
kill 'TERM', $pid;
waitpid($pid, 0);

# Redis gone: every worker says so
rewrite($d, conf($port), 2);
reload($d);
is(wait_for($port, '1/2', 5), '1/2', 'back to 2 workers: 1/2');
close $admin;
stop_redis($rp);
is(wait_for($port, '0/0', 5), '0/0', 'Redis stopped: 0/0');

# nothing but what the test caused: the kill -9
open my $log, '<', "$d/logs/error.log" or die;
my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal|core dumped|open socket/
                 && !/exited on signal 9\b/ } <$log>;
ok(!@bad, 'error log has no [alert], [emerg], [crit] or crash but the kill -9')
    or diag(join '', @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
done_testing();
