#!/bin/sh
# Capture the nf_tables batches Debian's nft sends for each *.nft file here, as hex.
#
# Each FILE.nft is loaded by `nft -f` in a throwaway network namespace under strace; every
# sendmsg that carries a batch (it starts with NFNL_MSG_BATCH_BEGIN) becomes one line of
# FILE.hex. Needs root (unshare -n), nft and strace. tests/nft_golden.rs reads the .hex files.
set -eu
cd "$(dirname "$0")"
nft --version > nft-version.txt
for f in *.nft; do
	name=${f%.nft}
	log=$(mktemp)
	unshare -n strace -f -e trace=sendmsg -e write=all -xx -s 0 -o "$log" nft -f "$f"
	# strace dumps each sendmsg buffer as lines " | OFFSET  HEX...  ASCII |"; a new
	# sendmsg( line starts a new datagram.
	awk '
		/sendmsg\(/ { if (cur != "") print cur; cur = ""; next }
		/^ *\| [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]  / {
			i = index($0, "| ")
			hex = substr($0, i + 9, 48)
			gsub(/ /, "", hex)
			cur = cur hex
		}
		END { if (cur != "") print cur }
	' "$log" | grep '^1400000010000' > "$name.hex"
	rm -f "$log"
	echo "$name: $(wc -l < "$name.hex") batch(es)"
done
