package Test::Nginx::Socket;

# A small, compatible re-implementation of CPAN's Test::Nginx::Socket
# (openresty/test-nginx) on top of Test::Base: a non-blocking socket HTTP/1.1
# client plus the per-block checks.  Test names, test counts, section names
# and environment variables follow the real module so that a t/*.t file runs
# unchanged under either.  nginx management is in Test::Nginx::Util.

use strict;
use warnings;

use Test::Base -base;    # Spiffy subclass: blocks(), plan, is/like/..., filters
use Test::Nginx::Util;
use Test::LongString;
use Time::HiRes qw( sleep );
use IO::Socket::INET ();
use IO::Select ();
use POSIX qw( EAGAIN :sys_wait_h );
use List::Util qw( min );
use HTTP::Response;
use Digest::MD5 ();
use Digest::SHA ();
use Encode ();

our $VERSION = '0.29';

our @EXPORT = qw( env_to_nginx is_str plan run_tests run_test
  repeat_each config_preamble worker_connections
  master_process_enabled
  no_long_string workers master_on master_off
  log_level no_shuffle no_root_location use_hup
  server_name
  server_addr server_root html_dir server_port server_port_for_client
  timeout no_nginx_manager check_accum_error_log
  add_block_preprocessor bail_out add_cleanup_handler
  add_response_body_check error_log_file
);

$RunTestHelper         = \&run_test_helper;
$CheckErrorLog         = \&check_error_log;
$CheckShutdownErrorLog = \&check_shutdown_error_log;

our @ResponseBodyChecks;

sub add_response_body_check ($) { push @ResponseBodyChecks, shift }
sub set_http_config_filter ($)  { $FilterHttpConfig = shift }
sub run_test ($)                { Test::Nginx::Util::run_test(shift) }

# ---- building requests ----

# "headers: v" lines (from --- more_headers) -> CRLF text, is-chunked flag
sub parse_more_headers ($) {
    my ($in) = @_;
    my ($out, $is_chunked) = ('', undef);
    for my $header (split /\n+/, $in // '') {
        next if $header =~ /^\s*\#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turn "METH [URL [VER]]\nbody" (possibly split into packets) into a full
# HTTP request: add Host, Connection and Content-Length (the body is then
# trimmed), as the real module does.  Returns the transformed packets.
sub build_request_from_packets ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn_header, $packets) = @_;
    my $req = join '', map { $_ // '' } @$packets;
    my ($first, $body) = $req =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") if $first eq '';
    $first =~ /^\s*(\S+) *(?:(\S+) *)?(?:(\S+) *)?\s*$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my ($meth, $url, $ver) = ($1, $2 // '/', $3 // 'HTTP/1.1');

    my ($len_header, $lead) = ('', 0);
    if (!$is_chunked && $body ne '' && $more_headers !~ /(?:^|\n)Content-Length:/) {
        $lead = length $1 if $body =~ /^(\s+)/;
        $body =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($body) . "\r\n";
    }
    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn_header\r\n" if $more_headers !~ /(?:^|\n)Connection/msi;
    my $head = "$meth $url $ver\r\n$headers$more_headers$len_header\r\n";
    my $full = $head . $body;
    return [$full] if @$packets <= 1;

    # re-split at the original packet boundaries (mapped into the new text)
    my (@out, $pos, $prev);
    ($pos, $prev) = (0, 0);
    for my $p (@$packets[0 .. $#$packets - 1]) {
        $pos += length($p // '');
        my $new = $pos <= length $first ? min($pos, length($head) - 2)
                : length($head) + $pos - length($first) - $lead;
        $new = $prev if $new < $prev;
        $new = length $full if $new > length $full;
        push @out, substr($full, $prev, $new - $prev);
        $prev = $new;
    }
    push @out, substr($full, $prev);
    return \@out;
}

sub _hdr_for ($$$) {
    my ($name, $more_headers, $i) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $h = $more_headers->[$i];
        bail_out("--- more_headers lacks data for the request $i") unless defined $h;
        return parse_more_headers($h);
    }
    return parse_more_headers($more_headers);
}

# Returns a list of requests; each is a list of packets {value, delay_before}.
sub get_req_from_block ($) {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $rr = $block->raw_request)) {
        return [ref $rr eq 'ARRAY' ? [map { { value => $_ } } @$rr] : [{ value => $rr }]];
    }

    my $request;
    if (defined $block->request_eval) {
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
    }
    my $more_headers = $block->more_headers || '';

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if ref $reqs ne 'ARRAY';
        my $prq = '';
        for my $i (0 .. $#$reqs) {
            my ($hdr, $chunked) = _hdr_for($name, $more_headers, $i);
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $prq .= build_request_from_packets($name, $hdr, $chunked, $conn, [$reqs->[$i]])->[0];
        }
        return [[{ value => $prq }]];
    }

    my @list = !ref $request ? ($request)
             : ref $request eq 'ARRAY' ? @$request
             : bail_out("$name - invalid ---request : MUST be string or array of requests");
    my @req_list;
    for my $i (0 .. $#list) {
        my ($hdr, $chunked) = _hdr_for($name, $more_headers, $i);
        my $one = $list[$i];
        if (!ref $one) {
            my $r = build_request_from_packets($name, $hdr, $chunked, 'close', [$one]);
            push @req_list, [{ value => $r->[0] }];
        } elsif (ref $one eq 'ARRAY') {    # a request split into packets
            my @pk = map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } } @$one;
            my $r = build_request_from_packets($name, $hdr, $chunked, 'close',
                                               [map { $_->{value} } @pk]);
            $pk[$_]{value} = $r->[$_] for 0 .. $#pk;
            push @req_list, \@pk;
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an array of packets.");
        }
    }
    return \@req_list;
}

# ---- the HTTP client ----

sub send_request ($$$$) {
    my ($req, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my @bits = @$req;
    my $head_req = (join '', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/ ? 1 : 0;
    local $SIG{PIPE} = 'IGNORE';

    my ($sock, $err);
    for my $try (1 .. 50) {
        $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                      PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        $err = $!;
        my $pid = -f $PidFile ? get_pid_from_pidfile($name) : $Test::Nginx::Util::ChildPid;
        last if $try >= 3 && !is_running($pid);     # nginx is gone
        warn "$name - Can't connect to $ServerAddr:$ServerPortForClient: $err\n" if $try > 10;
        sleep min(1, sleep_time() * $try);
    }
    if (!$sock) {
        Test::More->builder->no_ending(1);
        fail("$name - Can't connect to $ServerAddr:$ServerPortForClient: $err (aborted)\n");
        return (undef, $head_req);
    }

    $sock->blocking(0);
    my ($resp, $buf, $off) = ('', (shift @bits)->{value} // '', 0);
    my $rsel = IO::Select->new($sock);
    my $wsel = IO::Select->new($sock);
    my $done = sub { $rsel->remove($sock); $wsel->remove($sock) };

    while ($rsel->count || $wsel->count) {
        my ($r, $w) = IO::Select->select($rsel->count ? $rsel : undef,
                                         $wsel->count ? $wsel : undef, undef, $timeout);
        if (!$r && !$w) {
            if (!defined $block->abort) {
                Test::More->builder->no_ending(1);
                fail("ERROR: client socket timed out - $name\n");
            }
            last;
        }
        if ($w && @$w) {
            while (1) {
                if ($off < length $buf) {
                    my $n = syswrite($sock, $buf, length($buf) - $off, $off);
                    if (!defined $n) {
                        last if $! == EAGAIN;
                        warn "write failed: $!\n";
                        $resp ||= "write failed: $!";
                        $wsel->remove($sock);
                        last;
                    }
                    $off += $n;
                    next;
                }
                my $next = shift @bits;
                if (!$next) {        # all data written
                    $wsel->remove($sock);
                    if (defined(my $how = $block->shutdown)) {
                        shutdown($sock, $how =~ /^\s*$/ ? 1 : $how);
                    }
                    last;
                }
                ($buf, $off) = ($next->{value} // '', 0);
                my $delay = $next->{delay_before} // $middle_delay;
                sleep $delay if $delay;
            }
        }
        if ($r && @$r) {
            while (1) {
                my $n = sysread($sock, my $chunk, 8192);
                if (!defined $n) {
                    last if $! == EAGAIN;
                    warn "WARNING: $name - HTTP response read failure: $!";
                    $done->();
                    last;
                }
                if ($n == 0) { $done->(); last }    # connection closed
                $resp .= $chunk;
            }
        }
    }
    close $sock;
    return ($resp, $head_req);
}

# Parse one response off the front of $raw_resp; returns
# (HTTP::Response, raw header text, leftover bytes for pipelining).
sub parse_response ($$$) {
    my ($name, $raw_resp, $head_req) = @_;
    my ($left, $raw_headers) = (undef, '');
    $raw_headers = $1 if $raw_resp =~ /(.*?\r\n)\r\n/s;

    my $res = HTTP::Response->parse($raw_resp);
    my $code = $res->code;
    if ($code && $code !~ /^\d+$/) { undef $code; $res->code(undef) }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my $bad = sub {
        Test::More->builder->no_ending(1);
        fail("$name - $_[0]");
        return;
    };

    if (defined $enc && $enc eq 'chunked') {
        my $raw = $res->content // '';
        my $decoded = '';
        while (1) {
            if ($raw =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $raw =~ /\G(.+)/gcs;
                last;
            }
            if ($raw =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                return $bad->("invalid chunked data received (not enought octets for the data section)")
                    if length($raw) - pos($raw) < $size;
                $decoded .= substr($raw, pos($raw), $size);
                pos($raw) += $size;
                return $bad->("invalid chunked data received (expected CRLF).")
                    if $raw !~ /\G\r\n/gc;
            } elsif ($raw =~ /\G(.+)/gcs) {
                return $bad->("invalid chunked body received: $1");
            } else {
                return $bad->("no last chunk found - $raw");
            }
        }
        $res->content($decoded);

    } elsif (defined $len && $len =~ /^\d+$/) {
        my $raw = $res->content // '';
        if (length $raw < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got ",
                 length $raw, "\n" unless $head_req;
        } elsif (length $raw > $len) {
            $left = substr $raw, $len;
            $res->content(substr $raw, 0, $len);
        }
    }
    return ($res, $raw_headers, $left);
}

# ---- the checks (names and counts as in the real module) ----

sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
            if !$need_array && $req_idx != 0;
        return $value->[$req_idx];
    }
    bail_out("$name - You asked for many requests, the expected results "
             . "should be arrays as well.") if $need_array;
    return $value;
}

# run one test unless $dry_run (then it is reported as skipped)
sub _maybe ($$$) {
    my ($dry_run, $what, $code) = @_;
    SKIP: {
        skip("$what - tests skipped due to $dry_run", 1) if $dry_run;
        $code->();
    }
}

sub check_error_code ($$$$$) {
    my ($block, $res, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    _maybe($dry_run, $name, sub {
        if (defined $block->error_code_like) {
            my $val = get_indexed_value($name, $block->error_code_like, $req_idx, $need_array);
            like($got, qr/$val/sm, "$name - status code ok");
        } elsif (defined $block->error_code_eval) {    # not in the real module
            my $val = eval get_indexed_value($name, $block->error_code_eval, $req_idx, $need_array);
            warn $@ if $@;
            is($got, $val, "$name - status code ok");
        } elsif (defined $block->error_code) {
            is($got, get_indexed_value($name, $block->error_code, $req_idx, $need_array),
               "$name - status code ok");
        } else {
            is($got, 200, "$name - status code ok");
        }
    });
}

sub check_raw_response_headers ($$$$$) {
    my ($block, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_like, $req_idx, $need_array);
        _maybe($dry_run, "$name - raw_response_headers_like", sub {
            like($raw_headers, qr/$pat/s, "$name - raw resp headers like");
        });
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_unlike, $req_idx, $need_array);
        _maybe($dry_run, "$name - raw_response_headers_unlike", sub {
            unlike($raw_headers, qr/$pat/s, "$name - raw resp headers unlike");
        });
    }
}

sub check_response_headers ($$$$$$) {
    my ($block, $res, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        my $headers = parse_headers(get_indexed_value($name, $block->response_headers,
                                                      $req_idx, $need_array));
        while (my ($key, $val) = each %$headers) {
            if (!defined $val) {
                _maybe($dry_run, "$name - response_headers", sub {
                    unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                           "$name - header $key not present in the raw headers");
                });
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $actual = ($res ? $res->header($key) : undef) // '';
            _maybe($dry_run, "$name - response_headers", sub {
                is($actual, $val, "$name - header $key ok");
            });
        }
    } elsif (defined $block->response_headers_like) {
        my $headers = parse_headers(get_indexed_value($name, $block->response_headers_like,
                                                      $req_idx, $need_array));
        while (my ($key, $val) = each %$headers) {
            my $actual = ($res ? $res->header($key) : undef) // '';
            _maybe($dry_run, "$name - response_headers_like", sub {
                like($actual, qr/^$val$/, "$name - header $key like ok");
            });
        }
    }
}

sub run_filter_helper ($$$) {
    my ($block, $filter, $content) = @_;
    return $filter->($content) if ref $filter eq 'CODE';
    my %f = (md5_hex => \&Digest::MD5::md5_hex, sha1_hex => \&Digest::SHA::sha1_hex,
             uc => sub { uc shift }, lc => sub { lc shift },
             ucfirst => sub { ucfirst shift }, lcfirst => sub { lcfirst shift },
             length => sub { length shift });
    my $f = !ref $filter && $f{$filter}
        or bail_out($block->name . " - unknown filter, \"$filter\", "
                    . "specified in the --- response_body_filters section");
    return $f->($content);
}

sub transform_response_body ($$$) {
    my ($block, $res, $req_idx) = @_;
    my $filters = $block->response_body_filters;
    return unless $res && defined $res->content && defined $filters;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    $filters = $filters->[$req_idx] // bail_out($block->name
        . " - the ---response_body_filters two-dimensional array unmatch the "
        . "specified request($req_idx)") if ref $filters->[0] eq 'ARRAY';
    my $new = $res->content;
    $new = run_filter_helper($block, $_, $new) for ref $filters ? @$filters : ($filters);
    $res->content($new);
}

sub check_response_body ($$$$$$) {
    my ($block, $res, $dry_run, $req_idx, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $expected;
        if ($block->response_body_eval) {
            $expected = eval get_indexed_value($name, $block->response_body_eval,
                                               $req_idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $req_idx, $need_array);
        }
        Encode::from_to($expected, 'UTF-8', $block->charset) if $block->charset;
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        my $desc = "(repeated req $repeated_req_idx, req $req_idx)";
        _maybe($dry_run, "$name - response_body", sub {
            if (ref $expected) {
                like($content, $expected, "$name - response_body - like $desc");
            } elsif ($NoLongString) {
                is($content, $expected, "$name - response_body - response is expected $desc");
            } else {
                is_string($content, $expected, "$name - response_body - response is expected $desc");
            }
        });

    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $pats = $type eq 'like' ? $block->response_body_like : $block->response_body_unlike;
        my $pat = get_indexed_value($name, $pats, $req_idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        _maybe($dry_run, "$name - response_body_$type", sub {
            my $cmp = $type eq 'like' ? \&like : \&unlike;
            $cmp->($content, qr/$pat/s, "$name - response_body_$type - response is expected ($summary)");
        });
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $req_idx, $repeated_req_idx, $dry_run);
    }
}

sub fmt_str ($) {
    my $str = shift;
    chomp $str;
    $str =~ s/"/\\"/g; $str =~ s/\r/\\r/g; $str =~ s/\n/\\n/g;
    return $str;
}

# section value -> list of patterns (lines of text, a qr//, or an eval'ed array)
sub _patterns ($) {
    my $pats = shift;
    if (!ref $pats) { chomp $pats; return [split /\n+/, $pats] }
    return ref $pats eq 'Regexp' ? [$pats] : [@$pats];
}

sub _line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : $line =~ /\Q$pat\E/;
}

# Each pattern must match some line: one pass/fail per pattern.
sub _check_must_match ($$$$$$) {
    my ($block, $section, $lines, $pats, $dry_run, $where) = @_;
    my $name = $block->name;
    $pats = _patterns($pats);
    for my $line (@$lines) {
        for my $pat (@$pats) {
            next if !defined $pat || !_line_matches($line, $pat);
            _maybe($dry_run, "$name - $section", sub {
                pass("$name - pattern \"$pat\" matches a line in $where");
            });
            undef $pat;
        }
    }
    for my $pat (grep { defined } @$pats) {
        _maybe($dry_run, "$name - $section", sub {
            fail("$name - pattern \"$pat\" should match a line in $where");
        });
    }
}

# No pattern may match: one pass per clean pattern, one fail per matching line.
sub _check_must_not_match ($$$$$$) {
    my ($block, $section, $lines, $pats, $dry_run, $where) = @_;
    my $name = $block->name;
    my (%found, $i);
    $pats = _patterns($pats);
    my ($file, $req) = $where =~ /^(\S+)(.*)$/;
    for my $line (@$lines) {
        $i++;
        for my $pat (grep { defined } @$pats) {
            next unless _line_matches($line, $pat);
            Test::More->builder->no_ending(1) if $found{$pat}++;
            my @more = @$lines[$i .. min($i + 8, $#$lines)];
            _maybe($dry_run, "$name - $section", sub {
                fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any line in "
                     . "$file but matches line \"" . fmt_str($line) . "\"$req\n" . join '', @more);
            });
        }
    }
    for my $pat (grep { defined && !$found{$_} } @$pats) {
        _maybe($dry_run, "$name - $section", sub {
            pass("$name - pattern \"" . fmt_str($pat) . "\" does not match a line in $where");
        });
    }
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;
    my $lines;
    my $where = "error.log (req $repeated_req_idx)";

    my $grep_pat = $block->grep_error_log;
    $grep_pat = $grep_pat->[$repeated_req_idx] if ref $grep_pat eq 'ARRAY';
    if (!defined $grep_pat && defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }
    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$repeated_req_idx] if ref $expected eq 'ARRAY';
        _maybe($dry_run, "$name - error_log", sub {
            $lines ||= error_log_data();
            my $matched = '';
            for my $line (@$lines) {     # collect the matched parts ($&)
                next unless ref $grep_pat ? $line =~ /$grep_pat/ : $line =~ /\Q$grep_pat\E/;
                $matched .= "$&\n" if $& !~ /\n/;
            }
            my $desc = "$name - grep_error_log_out (req $repeated_req_idx)";
            if (ref $expected eq 'Regexp') { like($matched, $expected, $desc) }
            elsif ($NoLongString)          { is($matched, $expected, $desc) }
            else                           { is_string($matched, $expected, $desc) }
        });
    }

    # levels that are only warned about when no pattern mentions them
    my %warn_on = map { $_ => 1 } qw(alert crit emerg);
    for my $sec (qw(error_log no_error_log)) {
        my $pats = $block->$sec;
        next unless defined $pats;
        for my $lvl (keys %warn_on) {
            delete $warn_on{$lvl} if grep { !ref $_ || ref $_ eq 'Regexp' ? "$_" =~ /\Q[$lvl\E/ : 0 }
                                     ref $pats eq 'ARRAY' ? @$pats : ($pats);
        }
        $lines ||= error_log_data();
        if ($sec eq 'error_log') {
            _check_must_match($block, $sec, $lines, $pats, $dry_run, $where);
        } else {
            _check_must_not_match($block, $sec, $lines, $pats, $dry_run, $where);
        }
    }

    return if $dry_run;
    $lines ||= error_log_data();
    for my $line (@$lines) {
        for my $lvl (keys %warn_on) {
            warn "WARNING: $name - " . fmt_str($line) . "\n" if $line =~ /\[$lvl\]/;
        }
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            chomp(my $l = $line);
            fail("$name - $l\n");
        }
    }
}

sub check_access_log ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $where = "access.log (req $repeated_req_idx)";
    my $lines;
    if (defined $block->access_log) {
        $lines ||= access_log_data();
        _check_must_match($block, 'access_log', $lines, $block->access_log, $dry_run, $where);
    }
    if (defined $block->no_access_log) {
        $lines ||= access_log_data();
        _check_must_not_match($block, 'no_access_log', $lines, $block->no_access_log,
                              $dry_run, $where);
    }
}

# Called (by Util) once the nginx that served the block has been stopped.
sub check_shutdown_error_log ($$) {
    my ($block, $dry_run) = @_;
    my $lines = error_log_data();
    if (defined $block->no_shutdown_error_log) {
        _check_must_not_match($block, 'no_shutdown_error_log', $lines,
                              $block->no_shutdown_error_log, $dry_run, 'error.log');
    }
    if (defined $block->shutdown_error_log) {
        _check_must_match($block, 'shutdown_error_log', $lines,
                          $block->shutdown_error_log, $dry_run, 'error.log');
    }
}

# ---- one repetition of a block ----

sub run_test_helper ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;

    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout) // timeout();
    my ($res, $n, $need_array);
    my $req_idx = 0;

    for my $one_req (@$reqs) {
        my ($raw_resp, $head_req) = $dry_run
            ? ("200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 0)
            : send_request($one_req, $block->raw_request_middle_delay, $timeout, $block);

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$reqs > 1;
        }

        while (1) {   # once per response (several when pipelining)
            warn "!!! resp: [", $raw_resp // '', "]" if $Test::Nginx::Util::Verbose;
            $raw_resp //= '';
            my ($raw_headers, $left) = ('');
            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, "OK", [], $raw_resp);
                } else {
                    ($res, $raw_headers, $left) = parse_response($name, $raw_resp, $head_req);
                    $raw_headers //= '';
                }
            }

            if (!$n) {
                if (defined $left && $left ne '') {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}',ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last chunk in ",
                         "response: \"$l\"\n";
                }
            } else {
                $raw_resp = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $dry_run, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $dry_run, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $dry_run, $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $dry_run, $req_idx, $repeated_req_idx, $need_array);
            }

            if ($n || $req_idx < @$reqs - 1) {
                sleep parse_time($block->wait) if $block->wait;
                check_error_log($block, $res, $dry_run, $repeated_req_idx, $need_array);
                check_access_log($block, $dry_run, $repeated_req_idx)
                    unless defined $block->ignore_response;
            }
            $req_idx++;
            last unless $n;
        }
    }

    sleep parse_time($block->wait) if $block->wait;
    check_error_log($block, $res, $dry_run, $repeated_req_idx, $need_array);
    check_access_log($block, $dry_run, $repeated_req_idx)
        unless defined $block->ignore_response;
}

1;
