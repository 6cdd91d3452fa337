# Helpers for the t/ scripts that drive their own Redis and nginx processes
# (Test::More, not Test::Nginx): private prefixes, free loopback ports,
# cleanup at exit.  Loaded with: require "$FindBin::Bin/helpers/scale.pl";
# Children made with fork must leave through POSIX::_exit.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(dirname);
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX qw(WNOHANG);

our ($nginx, $so, $work, %redis, @nginx);

$nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
($so) = grep { /ngx_http_scale_module\.so$/ }
           split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

sub need_module_and_redis {
    plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module' unless $so;
    plan skip_all => 'redis-server not found'
        if system('command -v redis-server >/dev/null') != 0;
}

$work = tempdir('nginx-scale-t.XXXXXX', TMPDIR => 1, CLEANUP => 1);


# free ports and private Redis servers: the rule scripts/test.sh and bench/
# use, in scripts/lib/redis.sh
my $redis_sh = dirname(__FILE__) . '/../../scripts/lib/redis.sh';

# a free loopback port below the ephemeral range, reserved for this test
sub free_port {
    open my $f, '-|', 'bash', $redis_sh, 'free_port', $$ or die "bash: $!";
    my $p = <$f> // '';
    close $f;
    $p =~ /^(\d+)$/ or die "no free port";
    return $1;
}

sub redis_cli { my $port = shift; my $cmd = join ' ', @_; return `redis-cli -p $port $cmd 2>/dev/null`; }

# redis-cli bounded by 3 s (a dead end never hangs the test), without \r
# and the last newline
sub redis_cli_bounded {
    my $port = shift;
    my $out = `timeout 3 redis-cli -p $port @_ 2>/dev/null`;
    $out =~ s/\r//g;
    chomp $out;
    return $out;
}

# start_redis(PORT, FLAG...): $redis{PORT} is its pid; stopped at exit
sub start_redis {
    my ($port, @flags) = @_;
    system('bash', $redis_sh, 'redis_start', $port, $work,
           '--enable-debug-command', 'yes', @flags) == 0
        or die "redis on $port did not start";
    open my $f, '<', "$work/redis-$port.pid" or die "redis on $port: no pid file";
    chomp($redis{$port} = <$f>);
}

sub stop_redis {
    my $port = shift;
    system('bash', $redis_sh, 'redis_stop', $port, $work);
    my $pid = delete $redis{$port} or return;
    # one a test forked itself (no pid file): reap it, KILL if it lingers
    return if waitpid($pid, WNOHANG) != 0;
    for (1 .. 50) { return if waitpid($pid, WNOHANG); sleep 0.05 }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub start_nginx {
    my ($name, $http, %o) = @_;
    my $d = "$work/$name";
    mkdir $d; mkdir "$d/logs";
    open my $f, '>', "$d/nginx.conf" or die;
    my $workers = $o{workers} || 1;
    print $f <<"_EOC_";
load_module $so;
worker_processes $workers;
pid $d/logs/nginx.pid;
error_log $d/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$http
}
_EOC_
    close $f;
    system("$nginx -p $d -c $d/nginx.conf") == 0 or die "nginx $name did not start";
    for (1 .. 50) { last if -s "$d/logs/nginx.pid"; sleep 0.1 }
    push @nginx, $d;
    sleep 0.3;   # workers connect to Redis
    return $d;
}

sub nginx_signal {
    my ($d, $sig) = @_;
    system("$nginx -p $d -c $d/nginx.conf -s $sig 2>/dev/null");
}

# the worker processes of the nginx in $d
sub worker_pids {
    my $d = shift;
    open my $f, '<', "$d/logs/nginx.pid" or return;
    my $master = <$f>;
    chomp $master;
    return split ' ', `pgrep -P $master`;
}

sub stop_nginx {
    my $d = shift;
    open my $f, '<', "$d/logs/nginx.pid" or return;
    my $pid = <$f>; chomp $pid;
    kill 'QUIT', $pid;
    for (1 .. 100) { last unless kill 0, $pid; sleep 0.05 }
    @nginx = grep { $_ ne $d } @nginx;
}

# GET: returns (status, seconds); status 0 when the request failed
sub get {
    my ($url, $timeout) = @_;
    $timeout ||= 5;
    my $out = `curl -s -o /dev/null -m $timeout -w '%{http_code} %{time_total}' '$url'`;
    my ($code, $t) = split ' ', $out;
    return ($code || 0, $t || 0);
}

sub errlog_clean {
    my ($d, $what) = @_;
    open my $f, '<', "$d/logs/error.log" or return fail("$what: no error log");
    my @bad = grep { /\[(alert|emerg|crit)\]|exited on signal \d+|core dumped|open socket/ } <$f>;
    ok(!@bad, "$what: error log has no [alert], [emerg], [crit] or crash")
        or diag(join '', @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
}

sub errlog_has {
    my ($d, $re) = @_;
    open my $f, '<', "$d/logs/error.log" or return 0;
    return scalar grep { /$re/ } <$f>;
}

# a ratelimit_redis record (README, *Redis key layout*) as "N:PREV:CUR",
# whether Redis holds the integer (PREV * 2^25 + CUR) * 4 + N or that
# text (limits from 2^25); '' if VALUE is neither
my $record_base = 2**25;

sub record_text {
    my $v = shift // '';
    $v =~ s/\s+$//;
    return $v if $v =~ /^\d+:\d+:\d+$/;
    return '' unless $v =~ /^\d+$/ && $v < 4 * $record_base**2;
    return join ':', $v % 4, int($v / 4 / $record_base), int($v / 4) % $record_base;
}

# the integer record of window N, PREV and CUR, as the module writes it
sub record_value {
    my ($n, $prev, $cur) = @_;
    return ($prev * $record_base + $cur) * 4 + $n;
}

# the count of the current window in a record, '' if VALUE is not one
sub record_count {
    my ($cur) = record_text(shift) =~ /(\d+)$/;
    return $cur // '';
}

# keep away from a window boundary of $win seconds on Redis' clock
sub wait_window {
    my ($port, $win, $margin) = @_;
    for (1 .. 120) {
        my ($now) = split /\n/, redis_cli($port, 'time');
        my $pos = $now % $win;
        return if $pos >= 1 && $win - $pos > $margin;
        sleep 0.5;
    }
}

sub evalsha_calls {
    my $port = shift;
    my ($n) = redis_cli($port, 'info commandstats') =~ /cmdstat_evalsha:calls=(\d+)/;
    return $n || 0;
}


# The example express app (examples/app: express-session + connect-redis),
# the judge of what a valid session is.  need_example_app() installs its
# node_modules on first use, or skips the test where node or the npm
# registry is missing; call it before any test runs.
my $app_dir = "$FindBin::Bin/../examples/app";
my @apps;

sub need_example_app {
    plan skip_all => 'node and npm are needed for the express app'
        if system('command -v node >/dev/null && command -v npm >/dev/null') != 0;
    return if -d "$app_dir/node_modules/express-session";
    system("cd $app_dir && npm ci --omit=dev --no-audit --no-fund >$work/npm.log 2>&1") == 0
        or plan skip_all => 'npm ci failed (no registry?): ' . `tail -3 $work/npm.log`;
}

# start_example_app(NAME, REDIS_PORT, SECRET, ENV...): its port, once it
# answers /healthz; stopped at exit
sub start_example_app {
    my ($name, $redis_port, $secret, %env) = @_;
    my $port = free_port();
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>', "$work/$name.log"; open STDERR, '>&', \*STDOUT;
        %ENV = (%ENV, PORT => $port, INSTANCE_ID => $name, SESSION_SECRET => $secret,
                REDIS_URL => "redis://127.0.0.1:$redis_port", %env);
        { exec 'node', "$app_dir/server.js" }
        POSIX::_exit(1);
    }
    push @apps, $pid;
    my $up = 0;
    for (1 .. 100) { $up = 1, last if (get("http://127.0.0.1:$port/healthz"))[0] == 200; sleep 0.1 }
    ok($up, "the express app $name is up") or diag(`cat $work/$name.log`);
    return $port;
}

# children (fork) leave through POSIX::_exit, so only the parent gets here
END {
    local $?;    # the test's exit status
    kill 'TERM', $_ for @apps;
    stop_nginx($_) for @nginx;
    stop_redis($_) for keys %redis;
}


1;
