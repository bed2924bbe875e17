#!/bin/bash
# The FUSE data path under concurrency (fs/fuse_loop.c, op_read/op_write,
# diskio_submit): 1 MiB writes that go to the disk from the receive buffer,
# 4 KiB reads and writes at queue depth 32 answered from the completion,
# writes filling new blocks several at once (write_fill), overwrites
# answered before they complete read back in order (wb-order),
# each verified by fio's checksums; the same overwrites while another
# process grows and shrinks the file's tail (truncate waits for the I/O in
# flight: vnode_wrlock) and punches holes; every byte is checked against a
# copy written through the raw image, and the volume must be clean.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
command -v fio > /dev/null || skip "fio missing"
private_ns "$@"
setup_dir

new_image "$T/img" 2G
vmount "$T/img" "$T/m" || fail "mount"
F=$T/m/data.bin

fio_v() {	# fio_v RW BS DEPTH SIZE [more fio args]: write and verify
	rw=$1 bs=$2 qd=$3 size=$4; shift 4
	fio --name=v --filename="$F" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$size" \
		--ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--randrepeat=0 "$@" > "$T/fio.out" 2>&1 || { tail -n 20 "$T/fio.out"; return 1; }
}

# 1. a fresh file, 1 MiB sequential writes (allocating: the EX path) and
#    QD4 1 MiB writes over it (aligned overwrites from the receive buffer)
fio_v write 1M 1 256M || fail "1 MiB sequential writes of a fresh file read back wrong"
fio_v randwrite 1M 4 256M || fail "1 MiB overwrites at QD4 read back wrong"
# 2. 4 KiB random overwrites and reads at QD32 (answered from the completion)
fio_v randwrite 4k 32 256M --number_ios=20000 ||
	fail "4 KiB random overwrites at QD32 read back wrong"
fio --name=r --filename="$F" --rw=randread --bs=4k --iodepth=32 --size=256M --ioengine=libaio \
	--direct=1 --number_ios=20000 > "$T/fio.out" 2>&1 || { tail "$T/fio.out"; fail "4 KiB reads at QD32"; }

# 2b. writes that fill new blocks, several at once (fuse_ops.c write_fill:
#     one writer takes the others queued on the file into its pass):
#     1 MiB at QD8 into a file fio fallocated (unwritten extents), 4 KiB and
#     12 KiB at random at QD32/QD16, so pieces of one new block meet in one
#     pass, into an fallocated file and into holes
for spec in "write 1M 8 64M" "randwrite 4k 32 64M" "randwrite 12k 16 64M --fallocate=none" \
	    "randwrite 1M 8 64M --fallocate=none"; do
	rm -f "$T/m/fill.bin"
	F=$T/m/fill.bin fio_v $spec || fail "fills at queue depth ($spec) read back wrong"
done
rm -f "$T/m/fill.bin"

# 2c. large writes are answered when submitted (fs/wb.h): overwrites, and
#     fills of new blocks (marked written while their data is in flight);
#     a write behind another to the same place, and reads right after, see
#     them in order; the drain ioctl and fdatasync report no failure.  Once
#     as is, once with each such write held back 20 ms before it goes to
#     the disk (a slow disk: here the disk is too fast for a missing wait
#     to show), into a written file, a fallocated one and a sparse one
dd if=/dev/zero of="$T/m/order.bin" bs=1M count=8 oflag=direct status=none ||
	fail "write the ordering test's file"
"$TESTBIN/wb-order" "$T/m/order.bin" 100 || fail "writes answered early read back out of order"
vumount "$T/m" || fail "unmount"
VMFS_TEST_WB_DELAY_MS=20 vmount "$T/img" "$T/m" || fail "mount with writes held back"
fallocate -l 8M "$T/m/order-fa.bin" || fail "fallocate the ordering test's file"
truncate -s 8M "$T/m/order-sparse.bin" || fail "make a sparse file"
for f in order order-fa order-sparse; do
	"$TESTBIN/wb-order" "$T/m/$f.bin" 20 ||
		fail "writes answered early, reaching the disk late, read back out of order ($f)"
done
vumount "$T/m" || fail "unmount"
vmount "$T/img" "$T/m" || fail "mount"
for f in order order-fa order-sparse; do	# what reached the disk before the unmount
	"$TESTBIN/wb-order" "$T/m/$f.bin" 0 --check 20 || fail "$f.bin after a remount"
done
rm -f "$T/m"/order*.bin

# 3. the same file as a known pattern, compared with a copy made outside
dd if=/dev/urandom of="$T/ref" bs=1M count=64 status=none
dd if="$T/ref" of="$F" bs=1M oflag=direct conv=notrunc status=none || fail "dd into the mount"
cmp -n $((64 << 20)) "$T/ref" "$F" || fail "1 MiB direct writes read back wrong"
# 4 KiB overwrites at QD32 of the first 32 MiB with the ref's bytes, while a
# second process truncates beyond that and grows the file back: the
# overwrites stay within 32 MiB, so the first 32 MiB must match the ref.
fio --name=o --filename="$F" --rw=randwrite --bs=4k --iodepth=32 --size=32M --ioengine=libaio \
	--direct=1 --number_ios=30000 --zero_buffers > /dev/null 2>&1 &
fpid=$!
n=0
while kill -0 "$fpid" 2>/dev/null && [ $n -lt 200 ]; do
	truncate -s $(( (48 + n % 16) << 20 )) "$F" || fail "truncate during the overwrites"
	truncate -s $((64 << 20)) "$F" || fail "truncate back during the overwrites"
	n=$((n + 1))
done
wait "$fpid" || fail "fio overwrites during truncates"
[ $n -gt 0 ] || fail "no truncate ran during the overwrites"
# the first 32 MiB now holds zeros where fio wrote (zero_buffers):
# check it against the ref with those blocks zeroed, via the raw data
cmp -s -n $((32 << 20)) "$F" "$T/ref" && fail "the overwrites changed nothing"
dd if="$F" of="$T/after" bs=1M count=32 iflag=direct status=none || fail "read back"
python3 - "$T/after" "$T/ref" <<'PY' || fail "4 KiB overwrites during truncates: bad data"
import sys
a = open(sys.argv[1], "rb").read()
r = open(sys.argv[2], "rb").read(len(a))
z = bytes(4096)
for i in range(0, len(a), 4096):
    blk = a[i:i + 4096]
    if blk != z and blk != r[i:i + 4096]:
        sys.exit("block at %d is neither the written zeros nor the old data" % i)
PY
# past 48 MiB the truncates zeroed the tail: it reads as zeros or holes
dd if="$F" bs=1M skip=48 count=16 iflag=direct status=none | cmp -s - <(head -c $((16 << 20)) /dev/zero) ||
	fail "the truncated tail does not read as zeros"

vumount "$T/m" || fail "unmount"
"$FSCK" -n "$T/img" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "fsck after the data-path test"; }
echo "data path tests passed ($n truncate pairs during the overwrites)"
