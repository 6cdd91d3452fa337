# Edges of the Redis client found by red-teaming it on loopback, each a
# bug that was there once:
#
#   a Sentinel whose TLS handshake never completes on the watch connection
#   (the SUBSCRIBE to +switch-master): the watch gives that connection up
#   when its subscribe timer fires and tries again, one connection at a
#   time; none is left open (no "open socket left" at quit)
#   a reply Redis's protocol parser refuses ("?garbage"): that connection
#   is dropped and the next one works; the parser's error is not carried
#   over to it (each later connection was lost at once, "out of memory")
#
# A fake TLS Sentinel (IO::Socket::SSL): its first connection (the query)
# answers SENTINEL get-master-addr-by-name with a TLS redis-server, every
# later one reads the ClientHello and says nothing.  A fake Redis answers
# the handshake, and the first GET on its first connection with garbage.
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX ();

our ($work, $nginx, $so, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
require "$FindBin::Bin/helpers/pool.pl";
need_module_and_redis();
plan skip_all => 'openssl not found' if system('command -v openssl >/dev/null') != 0;
plan skip_all => 'IO::Socket::SSL not installed' unless eval { require IO::Socket::SSL; 1 };

my $parent = $$;
my %proc;                   # name => pid

END {
    if ($$ == $parent) {
        local $?;
        for my $pid (values %proc) {
            kill 'TERM', $pid;
            for (1 .. 50) { last if waitpid($pid, POSIX::WNOHANG()); sleep 0.05 }
            kill 'KILL', $pid;
            waitpid $pid, 0;
        }
    }
}

# ------------------------------------------------------------ TLS --
my $pki = "$work/pki";
mkdir $pki;
system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
       . " -nodes -keyout $pki/server.key -out $pki/server.pem -days 2"
       . " -subj '/CN=localhost' >$pki/openssl.log 2>&1") == 0
    or BAIL_OUT('openssl: ' . `tail -3 $pki/openssl.log`);

sub spawn {
    my ($name, $code) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        $code->();
        POSIX::_exit(0);
    }
    $proc{$name} = $pid;
}

sub start_tls_redis {
    my ($port) = @_;
    my $dir = "$work/redis-$port";
    mkdir $dir;
    open my $f, '>', "$dir/redis.conf" or die;
    print $f "port 0\nbind 127.0.0.1\ntls-port $port\n"
           . "tls-cert-file $pki/server.pem\ntls-key-file $pki/server.key\n"
           . "tls-auth-clients no\nsave \"\"\nappendonly no\ndir $dir\n";
    close $f;
    spawn("redis-$port", sub {
        open STDOUT, '>>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', "$dir/redis.conf";
    });
    return within(5, sub {
        `timeout 3 redis-cli --tls --insecure -p $port ping 2>/dev/null` =~ /PONG/
    });
}

# one RESP command (an array of bulk strings) from $c, or undef at EOF
sub read_command {
    my $c = shift;
    my $line = <$c> // return undef;
    $line =~ /^\*(\d+)/ or return undef;
    my @args;
    for (1 .. $1) {
        my $len = <$c> // return undef;
        $len =~ /^\$(\d+)/ or return undef;
        my $arg = '';
        while (length $arg < $1 + 2) {
            my $n = read($c, $arg, $1 + 2 - length $arg, length $arg);
            return undef unless $n;
        }
        push @args, substr($arg, 0, $1);
    }
    return \@args;
}

# the fake Sentinel: connection 1 answers, the others stall in the handshake
sub start_stalling_sentinel {
    my ($port, $master) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Listen => 64, ReuseAddr => 1)
        or die "listen $port: $!";
    spawn("sentinel-$port", sub {
        $SIG{CHLD} = 'IGNORE';
        my $n = 0;
        for (1 .. 1000) {
            my $c = $l->accept or next;
            $n++;
            if (open my $f, '>>', "$work/accepts-$port") { print $f "$n\n" }
            my $pid = fork;
            if (defined $pid && $pid == 0) {
                if ($n == 1) {
                    IO::Socket::SSL->start_SSL($c, SSL_server => 1,
                        SSL_cert_file => "$pki/server.pem",
                        SSL_key_file => "$pki/server.key") or POSIX::_exit(0);
                    while (my $cmd = read_command($c)) {
                        if (uc $cmd->[0] eq 'SENTINEL') {
                            print $c "*2\r\n\$9\r\n127.0.0.1\r\n\$"
                                   . length($master) . "\r\n$master\r\n";
                        } else {
                            print $c "+OK\r\n";
                        }
                    }
                } else {
                    # the ClientHello is read, nothing is ever answered
                    1 while sysread($c, my $buf, 4096);
                }
                POSIX::_exit(0);
            }
            close $c;
        }
    });
    close $l;
}

# connections open to a port, seen from the server side
sub established {
    my $port = shift;
    my @l = grep { /\S/ } `ss -Htn state established '( sport = :$port )' 2>/dev/null`;
    return scalar @l;
}

# ------------------------------------------------ TLS Sentinel stalls --
{
    my ($rp, $sp, $hp) = (free_port(), free_port(), free_port());
    ok(start_tls_redis($rp), "TLS redis-server on $rp");
    start_stalling_sentinel($sp, $rp);
    my $ct = 500 * $valgrind_slow;

    my $d = start_nginx_main('tls-sentinel', '', <<"_EOC_");
    redis_pool rs {
        sentinel 127.0.0.1:$sp; master mymaster;
        ssl on; ssl_verify off;
        connect_timeout ${ct}ms; timeout 100ms;
    }
    ratelimit_redis_zone \$arg_k zone=rs rate=100r/m pool=rs;
    server {
        listen 127.0.0.1:$hp;
        add_header X-RL \$ratelimit_redis_status always;
        location = /rl { ratelimit_redis zone=rs; empty_gif; }
    }
_EOC_
    my $base = "http://127.0.0.1:$hp";

    ok(within(10, sub { preq("$base/rl?k=a")->{rl} eq 'PASSED' }),
       'the master the TLS Sentinel named answers')
        or diag(`grep -v keepalive $d/logs/error.log | tail -8`);

    # the watch gives up on a handshake in connect_timeout + timeout and
    # tries again: some rounds, then at most the query and one watch are open
    sleep 3 * $valgrind_slow;
    my $open = established($sp);
    my $accepted = () = do { open my $f, '<', "$work/accepts-$sp"; $f ? <$f> : () };
    cmp_ok($accepted, '>=', 3, 'the watch tried again after stalled handshakes');
    ok($open <= 2, "connections open to the stalling Sentinel: $open, "
                   . "at most the query and one watch");

    stop_nginx_main($d);
    errlog_clean($d, 'TLS Sentinel stalls');
    valgrind_clean($d, 'TLS Sentinel stalls');
}

# ------------------------------------------------ a protocol error --
{
    my ($rp, $hp) = (free_port(), free_port());
    my $session = '{"cookie":{"originalMaxAge":3600000,'
                . '"expires":"2036-11-27T01:57:37.589Z","path":"/"},'
                . '"user":{"id":"alice"}}';
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $rp,
                                  Listen => 64, ReuseAddr => 1)
        or die "listen $rp: $!";
    spawn("redis-$rp", sub {
        $SIG{CHLD} = 'IGNORE';
        for my $n (1 .. 200) {
            my $c = $l->accept or next;
            my $pid = fork;
            if (defined $pid && $pid == 0) {
                $c->autoflush(1);
                my $garbage = $n == 1;
                while (my $cmd = read_command($c)) {
                    my $w = uc $cmd->[0];
                    if ($w eq 'ROLE') {
                        print $c "*3\r\n\$6\r\nmaster\r\n:0\r\n*0\r\n";
                    } elsif ($w eq 'PING') {
                        print $c "+PONG\r\n";
                    } elsif ($w eq 'GET' && $garbage) {
                        print $c "?garbage\r\n";
                        $garbage = 0;
                    } elsif ($w eq 'GET') {
                        print $c '$' . length($session) . "\r\n$session\r\n";
                    } else {
                        print $c "+OK\r\n";
                    }
                }
                POSIX::_exit(0);
            }
            close $c;
        }
    });
    close $l;

    my $d = start_nginx_main('protocol-error', '', <<"_EOC_");
    redis_pool pe { server 127.0.0.1:$rp; }
    server {
        listen 127.0.0.1:$hp;
        location /s {
            session_redis pe;
            session_redis_required off;
            session_redis_fail_open on;
            session_redis_set \$user_id user.id;
            add_header X-Session \$session_redis_status always;
            empty_gif;
        }
    }
_EOC_
    my $url = "http://127.0.0.1:$hp/s";
    my $status = sub {
        my $h = `curl -s -m 5 -o /dev/null -D - -H 'Cookie: sid=abc' '$url'`;
        return $h =~ /^X-Session: (\w+)/mi ? $1 : '';
    };

    within(5, sub { errlog_has($d, qr/redis pool "pe" connected/) });
    is($status->(), 'ERROR', 'the reply the parser refuses: the session is ERROR');
    ok(within(5, sub { $status->() eq 'VALID' }),
       'the next connection answers: VALID')
        or diag(`grep -v keepalive $d/logs/error.log | tail -6`);
    ok(!errlog_has($d, qr/lost connection.*out of memory/),
       'no connection lost with "out of memory" after the protocol error');

    stop_nginx_main($d);
    errlog_clean($d, 'protocol error');
    valgrind_clean($d, 'protocol error');
}

done_testing();
