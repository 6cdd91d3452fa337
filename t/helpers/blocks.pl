# Defaults for the blocks of a data-driven file (Test::Nginx::Socket), so
# that each block shows only what it tests:
#
#   use FindBin;
#   require "$FindBin::Bin/helpers/blocks.pl";
#   block_defaults(http_config => $HttpConfig, no_error_log => "[alert]\n...");
#
# Every block that has no such section of its own gets the value; a code
# ref is called with the block and returns it.  Only add_block_preprocessor
# and set_value are used: the real Test::Nginx's API, so a file runs under
# it and under t/lib alike.

use strict;
use warnings;

sub block_defaults {
    my (%default) = @_;

    add_block_preprocessor(sub {
        my $block = shift;
        for my $section (sort keys %default) {
            next if defined $block->$section;
            my $value = $default{$section};
            $block->set_value($section,
                              ref $value eq 'CODE' ? $value->($block) : $value);
        }
    });
}

1;
