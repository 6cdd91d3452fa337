# For the t/ scripts that drive their own nginx (helpers/scale.pl) and want
# main-context lines or memcheck: start_nginx_main() is start_nginx() with
# lines before events {}, and under TEST_NGINX_USE_VALGRIND (make
# test-valgrind) it runs every nginx process in valgrind; valgrind_clean()
# then asserts that none lost memory or touched memory it must not.
# Loaded after scale.pl: require "$FindBin::Bin/helpers/valgrind.pl";

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(sleep);

our ($nginx, $so, $work, @nginx);

# valgrind makes everything slower: scale time limits by this
our $valgrind_slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 8 : 1;

sub start_nginx_main {
    my ($name, $main, $http) = @_;
    my $d = "$work/$name";
    mkdir $d; mkdir "$d/logs";
    open my $f, '>', "$d/nginx.conf" or die;
    print $f <<"_EOC_";
load_module $so;
worker_processes 1;
pid $d/logs/nginx.pid;
error_log $d/logs/error.log info;
$main
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$http
}
_EOC_
    close $f;
    my $cmd = "$nginx -p $d -c $d/nginx.conf";
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        my $supp = "$FindBin::Bin/valgrind.suppress";
        $cmd = "valgrind -q --trace-children=yes --leak-check=full"
             . " --show-possibly-lost=no --errors-for-leak-kinds=definite"
             . " --suppressions=$supp --log-file=$d/valgrind.%p.log $cmd";
    }
    system($cmd) == 0 or die "nginx $name did not start";
    for (1 .. 100 * $valgrind_slow) { last if -s "$d/logs/nginx.pid"; sleep 0.1 }
    push @nginx, $d;
    sleep 0.5 * $valgrind_slow;   # workers connect to Redis
    return $d;
}

# whether a process runs (an exited one its parent has not reaped does not)
sub alive {
    my $pid = shift;
    return 0 unless kill 0, $pid;
    open my $f, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$f> // '';
    return $stat !~ /^\d+ \(.*\) [ZX] /;
}

# stops the nginx of $d and waits until it is gone (scale.pl's stop_nginx,
# with the time valgrind takes to write its reports)
sub stop_nginx_main {
    my $d = shift;
    open my $f, '<', "$d/logs/nginx.pid" or return;
    my $pid = <$f>; chomp $pid;
    kill 'QUIT', $pid;
    for (1 .. 100 * $valgrind_slow) { last unless alive($pid); sleep 0.05 }
    @nginx = grep { $_ ne $d } @nginx;
}

sub valgrind_clean {
    my ($d, $what) = @_;
    return unless $ENV{TEST_NGINX_USE_VALGRIND};
    my @bad;
    for my $log (glob "$d/valgrind.*.log") {
        open my $f, '<', $log or next;
        my $text = do { local $/; <$f> };
        push @bad, $text
            if $text =~ /definitely lost|Invalid (read|write|free)|uninitialised/;
    }
    ok(!@bad, "$what: valgrind found no leak or memory error")
        or diag(substr(join("\n", @bad), 0, 4000));
}


1;
