# A tiny DNS server for the t/ scripts that test `resolve`: UDP on
# 127.0.0.1, a free port, answering A queries from a map file that the
# test rewrites (re-read on every query), TTL 1, NXDOMAIN for names not in
# the map, an empty answer (NODATA) for other types of a known name.  Every
# query is appended to a log, so a test can count them.
#
#   my $dns = start_dns();                 # { port, pid, map, log }
#   dns_map($dns, 'redis.test' => '127.0.0.1');   # replaces the map
#   dns_queries($dns, 'redis.test')        # A queries seen for the name
#   stop_dns($dns);  start_dns($dns);      # down, and up again on its port
#
# A map value of 'drop' makes the server read the query and not answer.
# Loaded after scale.pl: require "$FindBin::Bin/helpers/dns.pl";

use strict;
use warnings;
use IO::Socket::INET;
use Socket qw(inet_aton);
use Time::HiRes qw(sleep);
use POSIX ();

our ($work);
my $dns_parent = $$;
my @dns_all;

sub dns_map {
    my ($dns, %map) = @_;
    my $tmp = "$dns->{map}.tmp";
    open my $f, '>', $tmp or die "$tmp: $!";
    print $f map { "$_ $map{$_}\n" } sort keys %map;
    close $f;
    rename $tmp, $dns->{map} or die "rename $tmp: $!";
}

sub dns_queries {
    my ($dns, $name) = @_;
    open my $f, '<', $dns->{log} or return 0;
    return scalar grep { /^\Q$name\E A$/i } <$f>;
}

sub _dns_read_map {
    my ($file) = @_;
    my %map;
    open my $f, '<', $file or return %map;
    while (<$f>) {
        my ($name, $addr) = split ' ';
        $map{lc $name} = $addr if defined $addr;
    }
    return %map;
}

# (id, flags, name, qtype, the question section as sent) of a query
sub _dns_parse {
    my ($pkt) = @_;
    return if length $pkt < 17;
    my ($id, $flags, $qd) = unpack 'n n n', $pkt;
    return if $qd != 1 || $flags & 0x8000;
    my ($off, @labels) = (12);
    while (1) {
        return if $off >= length $pkt;
        my $len = ord substr $pkt, $off, 1;
        $off++;
        last if $len == 0;
        return if $len > 63 || $off + $len > length $pkt;
        push @labels, substr $pkt, $off, $len;
        $off += $len;
    }
    return if $off + 4 > length $pkt;
    my ($qtype) = unpack 'n', substr $pkt, $off, 2;
    my $question = substr $pkt, 12, $off + 4 - 12;
    return ($id, $flags, lc(join '.', @labels), $qtype, $question);
}

sub _dns_serve {
    my ($sock, $dns) = @_;
    open my $log, '>>', $dns->{log} or POSIX::_exit(1);
    $log->autoflush(1);
    while (1) {
        my $peer = $sock->recv(my $pkt, 4096, 0);
        next unless defined $peer;
        my ($id, $flags, $name, $qtype, $question) = _dns_parse($pkt) or next;
        print $log "$name ", ($qtype == 1 ? 'A' : $qtype == 28 ? 'AAAA' : "T$qtype"), "\n";
        my %map = _dns_read_map($dns->{map});
        my $addr = $map{$name};
        next if defined $addr && $addr eq 'drop';
        my $rd = $flags & 0x0100;
        my ($rcode, $answer, $an) = (0, '', 0);
        if (!defined $addr) {
            $rcode = 3;                                  # NXDOMAIN
        } elsif ($qtype == 1) {
            for my $a (split /,/, $addr) {
                my $ip = inet_aton($a) or next;
                $answer .= pack('n n n N n', 0xc00c, 1, 1, 1, 4) . $ip;
                $an++;
            }
        }
        my $resp = pack('n n n n n n', $id, 0x8000 | 0x0400 | $rd | 0x0080 | $rcode,
                        1, $an, 0, 0) . $question . $answer;
        $sock->send($resp, 0, $peer);
    }
}

# starts the server (again, on its old port when given the old $dns)
sub start_dns {
    my ($dns) = @_;
    $dns //= { map => "$work/dns-map-" . (scalar(@dns_all) + 1),
               log => "$work/dns-queries-" . (scalar(@dns_all) + 1) };
    open my $touch, '>>', $dns->{map} or die;
    close $touch;
    my $sock;
    for (1 .. 50) {
        $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1',
                                      LocalPort => $dns->{port} // 0);
        last if $sock;
        sleep 0.1;
    }
    die "dns: cannot bind udp 127.0.0.1:" . ($dns->{port} // 0) . ": $!" unless $sock;
    $dns->{port} = $sock->sockport;
    my $pid = fork // die;
    if ($pid == 0) {
        _dns_serve($sock, $dns);
        POSIX::_exit(0);
    }
    close $sock;
    $dns->{pid} = $pid;
    push @dns_all, $dns unless grep { $_ == $dns } @dns_all;
    return $dns;
}

sub stop_dns {
    my ($dns) = @_;
    my $pid = delete $dns->{pid} or return;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

END {
    if ($$ == $dns_parent) {
        local $?;
        stop_dns($_) for @dns_all;
    }
}


1;
