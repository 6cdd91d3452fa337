# TLS and ACL to Redis, as managed Redis services require them: Debian's
# redis-server with --port 0 --tls-port (no plaintext port at all) and
# certificates this test makes with openssl (a CA, another CA, a server
# certificate for DNS:localhost and IP:127.0.0.1, a client certificate).
#
#   verified TLS + ACL user: exact limits, sessions, /ready 200
#   wrong CA, wrong name, the system CA bundle (default), no client
#   certificate where one is required, a protocol both sides do not share,
#   TLS to a plaintext port and plaintext to a TLS port: the pool is down,
#   an [error] line names the pool and says why, /ready 503 names the pool,
#   requests get their fail-open / fail-closed verdict, nothing hangs
#   ssl_verify off, mTLS: work
#   nginx -t refusals, as proxy_ssl_* refuses them
#   Redis dropping the connections and restarting: reconnects, with TLS
#   session reuse (nginx's own "SSL reused session" debug line)
#   connections 4 under load with a reload in the middle: every verdict
#   right, exact counts, old workers leave, no "open socket left"
#
# Plain Test::More; loopback only; every loop bounded in count and time.

use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();

our ($work, $nginx, $so, $valgrind_slow);
require "$FindBin::Bin/helpers/scale.pl";
require "$FindBin::Bin/helpers/valgrind.pl";
require "$FindBin::Bin/helpers/pool.pl";
need_module_and_redis();
plan skip_all => 'openssl not found' if system('command -v openssl >/dev/null') != 0;

my $parent = $$;
my %tls;            # TLS Redis servers: port => { pid, conf, name }

# ------------------------------------------------------------ certificates --
my $pki = "$work/pki";
mkdir $pki;

sub ossl {
    my $cmd = shift;
    system("cd $pki && openssl $cmd >>$pki/openssl.log 2>&1") == 0
        or BAIL_OUT("openssl $cmd failed: " . `tail -5 $pki/openssl.log`);
}

sub make_ca {
    my ($name, $cn) = @_;
    ossl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
         . " -keyout $name.key -out $name.pem -days 2 -subj '/CN=$cn'"
         . " -addext basicConstraints=critical,CA:TRUE"
         . " -addext keyUsage=critical,keyCertSign,cRLSign");
}

sub make_cert {
    my ($name, $cn, $ca, $ext) = @_;
    open my $f, '>', "$pki/$name.ext" or die;
    print $f "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n$ext\n";
    close $f;
    ossl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
         . " -keyout $name.key -out $name.csr -subj '/CN=$cn'");
    ossl("x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial"
         . " -out $name.pem -days 2 -extfile $name.ext");
}

make_ca('ca', 'nginx-scale test CA');
make_ca('other-ca', 'some other CA');
make_cert('server', 'localhost', 'ca',
          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1");
make_cert('client', 'nginx-scale client', 'ca', 'extendedKeyUsage=clientAuth');
is(system("openssl verify -CAfile $pki/ca.pem $pki/server.pem $pki/client.pem >/dev/null 2>&1"), 0,
   'the test PKI: server and client certificates verify against the CA');
isnt(system("openssl verify -CAfile $pki/other-ca.pem $pki/server.pem >/dev/null 2>&1"), 0,
     'and not against the other CA');

# ------------------------------------------------------------ TLS Redis --
my $admin = 'admin-pw';
# the least-privilege users of README "ACL users", for limits and sessions
my $app_acl = '~rl:* ~sess:* +evalsha +eval +time +hmget +hset +pexpire +unlink +ping'
            . ' +role +script|load +get +expire';

# redis-cli over TLS as the admin (with the client certificate, which every
# server takes), bounded
sub cli {
    my $port = shift;
    my $args = join ' ', map { "'$_'" } @_;
    my $out = `timeout 3 redis-cli --tls --cacert $pki/ca.pem --cert $pki/client.pem --key $pki/client.key -h localhost -p $port --user default --pass $admin --no-auth-warning $args 2>&1`;
    $out =~ s/\r//g;
    chomp $out;
    return $out;
}

sub start_tls_redis {
    my ($name, $port, @extra) = @_;
    my $dir = "$work/$name";
    mkdir $dir;
    my $conf = "$dir/redis.conf";
    open my $f, '>', $conf or die;
    print $f <<"_EOC_";
port 0
bind 127.0.0.1
tls-port $port
tls-cert-file $pki/server.pem
tls-key-file $pki/server.key
tls-ca-cert-file $pki/ca.pem
save ""
appendonly no
dir $dir
user default on >$admin ~* &* +\@all
user app on >app-pw $app_acl
_EOC_
    print $f "$_\n" for @extra;
    close $f;
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        { exec 'redis-server', $conf }
        POSIX::_exit(1);
    }
    $tls{$port} = { pid => $pid, name => $name, extra => \@extra };
    my $up = within(5, sub { cli($port, 'ping') eq 'PONG' });
    return $up;
}

sub stop_tls_redis {
    my ($port, $sig) = @_;
    my $r = $tls{$port} or return;
    kill $sig || 'TERM', $r->{pid};
    for (1 .. 100) { last if waitpid($r->{pid}, POSIX::WNOHANG()); sleep 0.05 }
    kill 'KILL', $r->{pid};
    waitpid $r->{pid}, 0;
    delete $r->{pid};
}

END {
    if ($$ == $parent) {
        local $?;
        stop_tls_redis($_) for grep { $tls{$_}{pid} } keys %tls;
    }
}

# keep away from a window boundary of $win seconds on Redis' clock
sub tls_wait_window {
    my ($port, $win, $margin) = @_;
    within(65, sub {
        my ($now) = split /\n/, cli($port, 'time');
        my $pos = ($now // 0) % $win;
        return $pos >= 1 && $win - $pos > $margin;
    }, 0.5);
}

my ($t1, $t2, $t3) = (free_port(), free_port(), free_port());
my $plain = free_port();

ok(start_tls_redis('verified', $t1, 'tls-auth-clients no'),
   "redis-server with TLS only on $t1, clients not asked for a certificate")
    or BAIL_OUT('redis-server does not start with --tls-port (built without TLS?): '
                . `tail -3 $work/verified/redis.log`);
ok(start_tls_redis('mtls', $t2, 'tls-auth-clients yes'),
   "redis-server with TLS on $t2 that requires a client certificate");
ok(start_tls_redis('tls12', $t3, 'tls-auth-clients no', 'tls-protocols TLSv1.2'),
   "redis-server on $t3 speaking TLSv1.2 only");
start_redis($plain);

# the harness itself: what each server accepts, seen from redis-cli
is(`timeout 3 redis-cli -p $t1 ping 2>&1` =~ /PONG/ ? 1 : 0, 0,
   'the TLS port does not answer plaintext');
like(`timeout 3 redis-cli --tls --cacert $pki/other-ca.pem -h localhost -p $t1 ping 2>&1`,
     qr/certificate verify failed|SSL/i, 'redis-cli with the other CA is refused');
unlike(`timeout 3 redis-cli --tls --cacert $pki/ca.pem -h localhost -p $t2 --user default --pass $admin --no-auth-warning ping 2>&1`,
       qr/PONG/, 'the mTLS server refuses a client without a certificate');
like(`timeout 3 redis-cli --tls --cacert $pki/ca.pem -h localhost -p $t1 --user app --pass app-pw --no-auth-warning ping 2>&1`,
     qr/PONG/, 'the ACL user app logs in over TLS');
like(`timeout 3 redis-cli --tls --cacert $pki/ca.pem -h localhost -p $t1 --user app --pass app-pw --no-auth-warning set x 1 2>&1`,
     qr/NOPERM/, 'and may not do what its ACL does not allow');
like(`echo | timeout 3 openssl s_client -tls1_3 -connect 127.0.0.1:$t3 -CAfile $pki/ca.pem 2>&1`,
     qr/alert protocol version|no protocols available|wrong version|handshake failure/i,
     'the TLSv1.2-only server refuses a TLSv1.3-only client');

my $session = '{"cookie":{"originalMaxAge":3600000,"expires":"2036-11-27T01:57:37.589Z",'
            . '"httpOnly":true,"path":"/"},"user":{"id":"tess"}}';
sub put_session { cli($t1, 'set', 'sess:tls-abc', $session, 'ex', '600') }
is(put_session(), 'OK', 'a session stored over TLS');

# ------------------------------------------------------- configurations --
my $ca  = "ssl_trusted_certificate $pki/ca.pem;";
my $oca = "ssl_trusted_certificate $pki/other-ca.pem;";
my $app = 'username app; password app-pw;';
my $ct  = 'connect_timeout 1s; timeout 300ms;';

# pools, each with its zone (2r/m) and locations: /NAME (fail open) and
# /NAME/closed (fail_open off); /plain needs no Redis
sub pools_conf {
    my ($port, %pools) = @_;
    my $c = '';
    for my $p (sort keys %pools) {
        $c .= "    redis_pool $p { $pools{$p} }\n"
            . "    ratelimit_redis_zone \$arg_k zone=$p rate=2r/m pool=$p;\n";
    }
    $c .= "    server {\n        listen 127.0.0.1:$port;\n"
        . "        add_header X-RL \$ratelimit_redis_status always;\n"
        . "        location = /ready { health_ready; }\n"
        . "        location = /metrics { health_metrics; }\n"
        . "        location = /plain { return 200 \"no redis here\\n\"; }\n";
    for my $p (sort keys %pools) {
        $c .= "        location = /$p { ratelimit_redis zone=$p; empty_gif; }\n"
            . "        location = /$p/closed { ratelimit_redis zone=$p;"
            . " ratelimit_redis_fail_open off; empty_gif; }\n";
    }
    return $c . "    }\n";
}

# starts an nginx when nginx -t accepts its configuration; else one failing
# test that shows nginx's answer, and undef: the directives of issue 11 are
# "unknown directive" until the new client lands, and the section is skipped
sub start_checked {
    my ($name, $main, $http, $what, %o) = @_;
    mkdir "$work/$name"; mkdir "$work/$name/logs";
    my ($rc, $out) = nginx_t($name, $http, $main);
    unless (ok($rc == 0, "nginx -t accepts $what")) {
        diag("nginx -t said:\n$out");
        return undef;
    }
    return start_nginx($name, $http, %o) if $o{workers};
    return start_nginx_main($name, $main, $http);
}

my $k = 0;
sub key { return "k" . $$ . '-' . $k++ }

# pools that cannot work, each [conf, why (regex), what]: all down in
# /ready?verbose, /ready 503, verdicts per policy at once, an [error] line
# that names the pool and says why, and no flood of them
sub check_down {
    my ($dn, $base, %bad) = @_;
    my %st;
    my $all = within(5, sub {
        %st = map { $_ => pool_state($base, $_) } keys %bad;
        return !grep { $st{$_} !~ /^failed/ } keys %bad;
    });
    ok(defined $all, 'every pool that cannot work is down in /ready?verbose within 5 s ('
                     . secs($all) . ')')
        or diag(join "\n", map { "$_: '$st{$_}'" } sort keys %st);
    my ($code, $text) = ready_verbose($base);
    is($code, 503, '/ready is 503');
    for my $p (sort keys %bad) {
        my (undef, $why, $what) = @{ $bad{$p} };
        like($text, qr/^\[-\]redis:$p failed/m, "$what: /ready?verbose names pool $p");
        my $r = preq("$base/$p?k=" . key());
        is("$r->{code} $r->{rl}", '200 FAILED_OPEN', "$what: fail_open on: 200 FAILED_OPEN");
        cmp_ok($r->{time}, '<', 1, "$what: answered at once while down ("
                                   . sprintf('%.2f', $r->{time}) . ' s)');
        is(verdict("$base/$p/closed?k=" . key()), '503 FAILED_CLOSED',
           "$what: fail_open off: 503 FAILED_CLOSED");
        # a new worker says so once its second attempt fails too
        my @lines;
        within(5, sub { @lines = errlog_lines($dn, qr/\[error\].*redis pool "$p"/);
                        scalar grep { /$why/ } @lines });
        ok(scalar(grep { /$why/ } @lines),
           "$what: an [error] line names pool \"$p\" and says why ($why)")
            or diag(@lines ? "lines for the pool:\n" . join('', @lines[0 .. ($#lines < 3 ? $#lines : 3)])
                           : "no [error] line names the pool; lines that do:\n"
                             . join('', grep { defined } (errlog_lines($dn, qr/"$p"/))[0 .. 5]));
    }
    my $r = preq("$base/plain");
    ok($r->{code} == 200 && $r->{time} < 0.5, 'a location without Redis answers at once');
    my ($p) = sort keys %bad;
    my $mark = errlog_mark($dn);
    sleep 3;
    my $n = () = errlog_since($dn, $mark, qr/redis pool "$p"/);
    cmp_ok($n, '<=', 8, "pool $p: $n log lines in 3 s (reconnects back off, no flood)");
}

# ------------------------------ 0. today's client: plaintext to a TLS port --
{
    my $cp = free_port();
    my %bad = (
        totls => ["server 127.0.0.1:$t1; $app $ct",
                  qr/closed|reset|timed out|handshake|protocol|connect/i,
                  'plaintext to a TLS port'],
    );
    my $dc = start_checked('control', '', pools_conf($cp, map { $_ => $bad{$_}[0] } keys %bad),
                           'a plaintext pool (no new directive)');
    check_down($dc, "http://127.0.0.1:$cp", %bad) if $dc;
    if ($dc) { stop_nginx_main($dc); errlog_clean($dc, 'plaintext to a TLS port') }
}

# ----------------------------------------- 1. verified TLS, ACL, sessions --
my %good = (
    tls      => "server 127.0.0.1:$t1; ssl on; $ca ssl_server_name localhost; $app $ct",
    byname   => "server localhost:$t1; ssl on; $ca $app $ct",
    byip     => "server 127.0.0.1:$t1; ssl on; $ca $app $ct",
    noverify => "server 127.0.0.1:$t1; ssl on; ssl_verify off; $oca $app $ct",
    mtls     => "server 127.0.0.1:$t2; ssl on; $ca ssl_server_name localhost;"
              . " ssl_certificate $pki/client.pem; ssl_certificate_key $pki/client.key;"
              . " password $admin; $ct",
    tls12ok  => "server 127.0.0.1:$t3; ssl on; $ca ssl_server_name localhost;"
              . " password $admin; $ct",
    nossl    => "server 127.0.0.1:$plain; $ca ssl_verify on; $ct",
);
GOOD: {
    my $gp = free_port();
    my $http = pools_conf($gp, %good);
    $http =~ s{(        location = /plain)}{        location = /sess { session_redis tls;
            session_redis_set \$uid user.id;
            add_header X-Uid "\$uid" always;
            add_header X-Session \$session_redis_status always;
            empty_gif; }
$1};
    my $d = start_checked('good', '', $http, 'TLS pools (ssl, ssl_verify, ssl_trusted_certificate,'
                          . ' ssl_server_name, ssl_certificate, ssl_certificate_key)')
        or last GOOD;
    my $g = "http://127.0.0.1:$gp";

    my $up = within(5, sub { (ready_verbose($g))[0] == 200 });
    ok(defined $up, 'every good pool is up: /ready 200 (' . secs($up) . ')')
        or diag((ready_verbose($g))[1]);

    tls_wait_window($t1, 60, 5);
    my $key = key();
    is(join(' ', map { verdict("$g/tls?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'verified TLS (ssl_server_name localhost) + ACL user, 2r/m: PASSED PASSED REJECTED');
    my ($hash) = cli($t1, '--scan', '--pattern', 'rl:{tls}:*') =~ /^(rl:\{tls\}:\d+)$/m;
    is(record_count(cli($t1, 'hget', $hash // 'none', $key)), 2,
       'the counter is in the TLS Redis (the zone\'s hash holds the key: 2 admitted)');
    my $clients = cli($t1, 'client', 'list');
    my $n = () = $clients =~ /user=app /g;
    cmp_ok($n, '>=', 4, "nginx's connections are logged in as the ACL user app ($n)")
        or diag($clients);
    for my $p (qw(byname byip)) {
        $key = key();
        is(join(' ', map { verdict("$g/$p?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
           $p eq 'byname' ? 'server localhost:PORT: the name as written is verified (SAN DNS:localhost)'
                          : 'server 127.0.0.1:PORT, no ssl_server_name: verified by the IP SAN');
    }
    my $r = preq("$g/sess", cookie => 'sid=tls-abc');
    is("$r->{code} $r->{sess} $r->{uid}", '200 VALID tess', 'session_redis over TLS: VALID, user tess');
    $r = preq("$g/sess", cookie => 'sid=nope');
    is("$r->{code} $r->{sess}", '401 MISSING', 'an unknown session over TLS: 401 MISSING');

    $key = key();
    is(join(' ', map { verdict("$g/noverify?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'ssl_verify off with the wrong CA: works (and limits)');
    $key = key();
    is(join(' ', map { verdict("$g/mtls?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'mTLS (tls-auth-clients yes) with ssl_certificate: works');
    $key = key();
    is(join(' ', map { verdict("$g/tls12ok?k=$key") } 1 .. 2), '200 PASSED 200 PASSED',
       'a TLSv1.2-only Redis with the default ssl_protocols: works');
    $key = key();
    is(join(' ', map { verdict("$g/nossl?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'ssl_* without "ssl on" (ignored, as proxy_ssl_* without https): plaintext works');
    like(pool_state($g, 'tls'), qr/^ok/, '/ready?verbose: redis:tls ok');
    ok(!errlog_has($d, qr/\[error\].*redis pool/), 'no [error] about any good pool')
        or diag(join '', grep { defined } (errlog_lines($d, qr/\[error\]/))[0 .. 4]);
    stop_nginx_main($d);
    errlog_clean($d, 'the nginx with good pools');
    valgrind_clean($d, 'the nginx with good pools');
}

# ------------------------------------------------------- 2. refused TLS --
BAD: {
    my $bp = free_port();
    my %bad = (
        wrongca   => ["server 127.0.0.1:$t1; ssl on; $oca ssl_server_name localhost; $app $ct",
                      qr/certif|verif/i, 'the wrong CA'],
        wrongname => ["server 127.0.0.1:$t1; ssl on; $ca ssl_server_name redis.example.com; $app $ct",
                      qr/certif|verif|match|name/i, 'the wrong ssl_server_name'],
        sysca     => ["server localhost:$t1; ssl on; $app $ct",
                      qr/certif|verif/i, 'no ssl_trusted_certificate (the system CA bundle)'],
        nocert    => ["server 127.0.0.1:$t2; ssl on; $ca ssl_server_name localhost;"
                      . " password $admin; $ct",
                      qr/certif|SSL|alert|handshake/i, 'no client certificate for an mTLS Redis'],
        tls13     => ["server 127.0.0.1:$t3; ssl on; $ca ssl_server_name localhost;"
                      . " ssl_protocols TLSv1.3; password $admin; $ct",
                      qr/protocol|version|SSL|handshake/i,
                      'ssl_protocols TLSv1.3 to a TLSv1.2-only Redis'],
        toplain   => ["server 127.0.0.1:$plain; ssl on; ssl_verify off; $ct",
                      qr/SSL|handshake|timed out|closed|version|record/i,
                      'TLS to a plaintext port'],
    );
    my $db = start_checked('bad', '', pools_conf($bp, map { $_ => $bad{$_}[0] } keys %bad),
                           'TLS pools that cannot work')
        or last BAD;
    check_down($db, "http://127.0.0.1:$bp", %bad);
    stop_nginx_main($db);
    errlog_clean($db, 'the nginx with refused pools');
}

# ----------------------------------------------------- 3. nginx -t refusals --
{
    my $pre = "    ratelimit_redis_zone \$arg_k zone=z rate=1r/s pool=p;\n";
    my @refused = (
        [ 'ssl_certificate without ssl_certificate_key',
          "ssl on; $ca ssl_certificate $pki/client.pem;", qr/ssl_certificate_key/ ],
        [ 'a missing ssl_certificate file',
          "ssl on; $ca ssl_certificate $pki/nope.pem; ssl_certificate_key $pki/client.key;",
          qr/\Q$pki\E\/nope\.pem/ ],
        [ 'a missing ssl_certificate_key file',
          "ssl on; $ca ssl_certificate $pki/client.pem; ssl_certificate_key $pki/nope.key;",
          qr/\Q$pki\E\/nope\.key/ ],
        [ 'a missing ssl_trusted_certificate file',
          "ssl on; ssl_trusted_certificate $pki/nope-ca.pem;", qr/\Q$pki\E\/nope-ca\.pem/ ],
        [ "a key that is not the certificate's",
          "ssl on; $ca ssl_certificate $pki/client.pem; ssl_certificate_key $pki/server.key;",
          qr/key|certificate/i ],
        [ 'ssl_protocols TLSv9', 'ssl on; ssl_protocols TLSv9;', qr/TLSv9/ ],
        [ 'ssl maybe', 'ssl maybe;', qr/maybe/ ],
        [ 'ssl_verify maybe', 'ssl on; ssl_verify maybe;', qr/maybe/ ],
        [ 'ssl twice', 'ssl on; ssl on;', qr/duplicate/ ],
    );
    my $i = 0;
    for my $c (@refused) {
        my ($what, $lines, $re) = @$c;
        my ($rc, $out) = nginx_t('refuse' . $i++,
            "    redis_pool p { server 127.0.0.1:$t1; $lines }\n$pre");
        isnt($rc, 0, "nginx -t refuses $what");
        ok($out =~ /\[emerg\].*$re/ && $out !~ /unknown directive/,
           "$what: the [emerg] says what ($re), not \"unknown directive\"")
            or diag($out);
        unlike($out, qr/\[(alert|crit)\]|signal \d+|core dumped/, "$what: no crash");
    }
    my ($rc, $out) = nginx_t('accept-nossl',
        "    redis_pool p { server 127.0.0.1:$t1; ssl off; ssl_certificate $pki/client.pem;"
        . " ssl_server_name x; }\n$pre");
    is($rc, 0, 'nginx -t accepts ssl_* in a pool with "ssl off" (as proxy_ssl_* without https)')
        or diag($out);
}

# ---------------------------------- 4. dropped connections and a restart --
REUSE: {
    my $rp = free_port();
    my $http = pools_conf($rp, tls => $good{tls});
    my $dr = start_checked('reuse', "error_log $work/reuse/logs/debug.log debug;", $http,
                           'a TLS pool, with a debug log')
        or last REUSE;
    my $r = "http://127.0.0.1:$rp";
    ok(defined within(5, sub { pool_state($r, 'tls') eq 'ok' }), 'the TLS pool is up');
    ok(scalar(errlog_lines($dr, qr/SSL_do_handshake: 1/, 'debug.log')),
       "the debug log shows nginx's own handshake (ngx_ssl_handshake: SSL_do_handshake: 1)");

    # Redis drops every connection of the user (CLIENT KILL): the reconnect
    # offers the session Redis issued, and Redis resumes it
    my $mark = errlog_mark($dr, 'debug.log');
    like(cli($t1, 'client', 'kill', 'user', 'app'), qr/^[1-9]\d*$/,
         "CLIENT KILL USER app drops nginx's connections");
    my $back = within(3, sub { verdict("$r/tls?k=" . key()) eq '200 PASSED' });
    ok(defined $back, 'after the drop: limiting resumes within 3 s (' . secs($back) . ')');
    my @reused = errlog_since($dr, $mark, qr/SSL reused session/, 'debug.log');
    ok(scalar @reused, 'the reconnect resumed the TLS session: "SSL reused session" in the debug log')
        or diag(join '', grep { defined } (errlog_since($dr, $mark, qr/SSL/, 'debug.log'))[0 .. 9]);

    # a restart: the pool is down while Redis is, answers at once, and
    # comes back by itself.  (A restarted Redis has new ticket keys and an
    # empty session cache: a full handshake is right there, so reuse is
    # checked on the drop above, not across the restart.)
    my @extra = @{ $tls{$t1}{extra} };
    stop_tls_redis($t1);
    my $down = within(3, sub { pool_state($r, 'tls') =~ /^failed/ });
    ok(defined $down, 'Redis stopped: the pool is down within 3 s (' . secs($down) . ')');
    my $q = preq("$r/tls?k=" . key());
    is("$q->{code} $q->{rl}", '200 FAILED_OPEN', 'Redis stopped: 200 FAILED_OPEN');
    cmp_ok($q->{time}, '<', 1, 'at once');
    is(verdict("$r/tls/closed?k=" . key()), '503 FAILED_CLOSED', 'Redis stopped, fail_open off: 503');
    ok(start_tls_redis('verified', $t1, @extra), 'Redis restarted');
    put_session();
    $back = within(3, sub { verdict("$r/tls?k=" . key()) eq '200 PASSED' });
    ok(defined $back, 'Redis back: limiting resumes within 3 s (' . secs($back) . ')');
    tls_wait_window($t1, 60, 5);
    my $key = key();
    is(join(' ', map { verdict("$r/tls?k=$key") } 1 .. 3), '200 PASSED 200 PASSED 429 REJECTED',
       'and limits exactly again');
    stop_nginx_main($dr);
    errlog_clean($dr, 'the nginx across drops and a restart');
}

# ----------------------- 5. connections 4 under load, a reload in the middle --
# Two wrk runs side by side for 6 s, a reload at 3 s: /wide (a limit never
# reached: every answer must be 200 PASSED) and /exact (one key at 50r/m:
# exactly 50 PASSED).  Once over plaintext (today's client: checks the
# harness), once over TLS.
sub load_run {
    my ($name, $pool, $wait_window, $what) = @_;
    my $lp = free_port();
    my $http = <<"_EOC_";
    redis_pool load { $pool }
    ratelimit_redis_zone \$arg_k zone=wide rate=10000000r/m pool=load;
    ratelimit_redis_zone \$arg_k zone=exact rate=50r/m pool=load;
    server {
        listen 127.0.0.1:$lp;
        add_header X-RL \$ratelimit_redis_status always;
        location = /wide  { ratelimit_redis zone=wide; empty_gif; }
        location = /exact { ratelimit_redis zone=exact; empty_gif; }
        location = /metrics { health_metrics; }
        location = /ready { health_ready; }
    }
_EOC_
    my $dl = start_checked($name, '', $http, "the load configuration ($what)", workers => 2)
        or return;
    my $l = "http://127.0.0.1:$lp";
    ok(defined within(5, sub { (ready_verbose($l))[0] == 200 }), "$what: the pool is up");
    my @old = worker_pids($dl);
    $wait_window->(12);
    my $ek = "exact" . $$ . $name;
    my $secs = 6;
    my @wrk;
    for my $path ("/wide?k=w$$", "/exact?k=$ek") {
        open my $fh, '-|', "wrk -t1 -c4 -d${secs}s --timeout 3s -H 'Connection: close'"
                           . " '$l$path' 2>&1" or die;
        push @wrk, [$path, $fh];
    }
    sleep $secs / 2;
    nginx_signal($dl, 'reload');
    my %res;
    for my $w (@wrk) {
        my ($path, $fh) = @$w;
        my $text = do { local $/; <$fh> };
        close $fh;
        my ($n) = $text =~ /(\d+) requests in/;
        my ($non2xx) = $text =~ /Non-2xx or 3xx responses: (\d+)/;
        my ($serr) = $text =~ /Socket errors: (.*)/;
        $res{$path =~ /wide/ ? 'wide' : 'exact'} =
            { n => $n // 0, non2xx => $non2xx // 0, serr => $serr // 'none', text => $text };
    }
    my ($w, $e) = @res{qw(wide exact)};
    diag(sprintf('%s: %d requests to /wide, %d to /exact in %d s, a reload at %d s',
                 $what, $w->{n}, $e->{n}, $secs, $secs / 2));
    cmp_ok($w->{n}, '>', 100, "$what: wrk got answers") or diag($w->{text});
    is("$w->{non2xx} / $w->{serr}", '0 / none',
       "$what, /wide: every answer 2xx, no socket error, across the reload")
        or diag($w->{text});
    my $m = sub { metric($l, "nginx_ratelimit_redis_requests_total\\{zone=\"$_[0]\","
                             . "result=\"$_[1]\"\\}") // 0 };
    is($m->('wide', 'failed_open') + $m->('exact', 'failed_open'), 0,
       "$what: no FAILED_OPEN: no command lost across the reload");
    cmp_ok($m->('wide', 'passed'), '>=', $w->{n}, "$what, /wide: every request PASSED");
    is($m->('exact', 'passed'), 50, "$what, /exact (50r/m) across the reload: exactly 50 PASSED");
    cmp_ok($m->('exact', 'rejected'), '>=', $e->{n} - 50,
           "$what, /exact: the rest REJECTED (" . $m->('exact', 'rejected') . ')');
    my $gone = within(5, sub { !grep { kill 0, $_ } @old });
    ok(defined $gone, "$what: the old workers left within 5 s of the reload (" . secs($gone) . ')');
    stop_nginx($dl);
    ok(!errlog_has($dl, qr/open socket/), "$what: no \"open socket left\" at reload or quit");
    errlog_clean($dl, "$what: the nginx under load");
}

SKIP: {
    skip 'wrk not found', 2 if system('command -v wrk >/dev/null') != 0;
    load_run('load-plain', "server 127.0.0.1:$plain; connections 4; timeout 1s;",
             sub { wait_window($plain, 60, $_[0]) }, 'plaintext, connections 4');
    load_run('load-tls', "server 127.0.0.1:$t1; ssl on; $ca ssl_server_name localhost; $app"
                         . ' connections 4; timeout 1s;',
             sub { tls_wait_window($t1, 60, $_[0]) }, 'TLS, connections 4');
}

done_testing();
