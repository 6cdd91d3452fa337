# For the t/ scripts that watch a redis_pool from the outside, as an
# operator does: one request and its verdicts, health_ready's answer, a
# metric, bounded waits, nginx -t of a configuration.
# Loaded after scale.pl (and valgrind.pl): require "$FindBin::Bin/helpers/pool.pl";
# Every request is bounded by curl -m; every wait by its seconds.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

our ($nginx, $so, $work, $valgrind_slow);

# one GET: { code, rl (X-RL), sess (X-Session), uid (X-Uid), time }
# code 0 when no HTTP answer came within $o{timeout} (default 5 s)
sub preq {
    my ($url, %o) = @_;
    my $m = $o{timeout} || 5;
    my $c = $o{cookie} ? "-H 'Cookie: $o{cookie}'" : '';
    my $out = `curl -s -m $m -D - -o /dev/null -w 'TIME %{time_total}\\n' $c '$url'`;
    my ($code) = $out =~ m{^HTTP/1\.\d (\d+)}m;
    my ($rl)   = $out =~ /^X-RL: (\w*)/mi;
    my ($se)   = $out =~ /^X-Session: (\w*)/mi;
    my ($uid)  = $out =~ /^X-Uid: (\S*)/mi;
    my ($t)    = $out =~ /^TIME ([\d.]+)/m;
    return { code => $code || 0, rl => $rl // '', sess => $se // '',
             uid => $uid // '', time => $t // $m };
}

# "CODE VERDICT" of one request: the short form most assertions compare
sub verdict {
    my $r = preq(@_);
    return "$r->{code} $r->{rl}";
}

# health_ready?verbose: (status, body)
sub ready_verbose {
    my ($base) = @_;
    my $body = `curl -s -m 3 -w '\\n%{http_code}' '$base/ready?verbose'`;
    my ($text, $code) = $body =~ /^(.*)\n(\d+)$/s;
    return ($code || 0, $text // '');
}

# the check of one pool in ready's answer: 'ok', 'failed: why' or ''
sub pool_state {
    my ($base, $pool) = @_;
    my (undef, $text) = ready_verbose($base);
    return $text =~ /^\[[-+]\]redis:\Q$pool\E (ok|failed.*?)\r?$/m ? $1 : '';
}

# repeats $try every $step s (0.1) until it returns true, at most $secs
# (scaled under valgrind); the seconds it took, or undef
sub within {
    my ($secs, $try, $step) = @_;
    $secs *= ($valgrind_slow || 1);
    $step ||= 0.1;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return time - $t0 if $try->();
        sleep $step;
    }
    return undef;
}

sub secs { my $t = shift; return defined $t ? sprintf('%.1f s', $t) : 'never' }

# one sample of a Prometheus metric (the full series name as a regex), or undef
sub metric {
    my ($base, $re) = @_;
    my $m = `curl -s -m 3 '$base/metrics'`;
    return $m =~ /^$re (\S+)$/m ? $1 : undef;
}

# nginx -t of a configuration: (exit status, its output)
sub nginx_t {
    my ($name, $http, $main) = @_;
    my $d = "$work/t-$name";
    mkdir $d; mkdir "$d/logs";
    open my $f, '>', "$d/nginx.conf" or die;
    $main //= '';
    print $f <<"_EOC_";
load_module $so;
pid $d/logs/nginx.pid;
error_log $d/logs/error.log info;
$main
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/body; proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$http
}
_EOC_
    close $f;
    my $out = `$nginx -t -q -p $d -c $d/nginx.conf -e $d/logs/error.log 2>&1`;
    return ($? >> 8, $out);
}

# the lines of $d's error log that match $re (all of them in list context)
sub errlog_lines {
    my ($d, $re, $file) = @_;
    open my $f, '<', "$d/logs/" . ($file || 'error.log') or return;
    return grep { /$re/ } <$f>;
}

# the size of $d's error log now: errlog_since() reads what came after
sub errlog_mark {
    my ($d, $file) = @_;
    return -s "$d/logs/" . ($file || 'error.log') || 0;
}

sub errlog_since {
    my ($d, $mark, $re, $file) = @_;
    open my $f, '<', "$d/logs/" . ($file || 'error.log') or return;
    seek $f, $mark, 0;
    return grep { /$re/ } <$f>;
}


1;
