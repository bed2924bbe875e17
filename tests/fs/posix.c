/* posix.c — POSIX behaviours and error codes on a mounted vmfs directory.
 * usage: posix DIR   (DIR must be empty; exit 0 = all pass) */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static int failures;
static char base[PATH_MAX - 300];
static char wbuf[4096];

#define OK(call)							\
	do {								\
		errno = 0;						\
		if ((call) < 0) {					\
			fprintf(stderr, "%d: %s failed: %s\n", __LINE__, #call, strerror(errno)); \
			failures++;					\
		}							\
	} while (0)
#define ERR(call, e)							\
	do {								\
		errno = 0;						\
		long r_ = (long)(call);					\
		if (r_ != -1 || errno != (e)) {				\
			fprintf(stderr, "%d: %s = %ld errno %s, want %s\n", __LINE__, #call, r_, \
				strerror(errno), strerror(e));		\
			failures++;					\
		}							\
	} while (0)
#define CHECK(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "%d: CHECK(%s) failed\n", __LINE__, #c); \
			failures++;					\
		}							\
	} while (0)

static const char *P(const char *rel)
{
	static char buf[4][PATH_MAX + 300];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", base, rel);
	return buf[i];
}

static int mkfile(const char *rel, const char *data)
{
	int fd = open(P(rel), O_CREAT | O_WRONLY | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	if (data && write(fd, data, strlen(data)) != (ssize_t)strlen(data)) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static nlink_t nlinks(const char *rel)
{
	struct stat st;

	return stat(P(rel), &st) ? 0 : st.st_nlink;
}

static int count_entries(const char *rel)
{
	DIR *d = opendir(P(rel));
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	char name[300], buf[64];
	struct stat st;
	int fd;

	if (argc != 2)
		return 2;
	snprintf(base, sizeof(base), "%s", argv[1]);

	/* create / exclusive create / mkdir */
	OK(mkfile("f", "hello"));
	ERR(open(P("f"), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	OK(mkdir(P("d"), 0755));
	ERR(mkdir(P("d"), 0755), EEXIST);
	ERR(mkdir(P("f/x"), 0755), ENOTDIR);
	ERR(open(P("nope"), O_RDONLY), ENOENT);
	CHECK(nlinks("d") == 2);
	OK(mkdir(P("d/sub"), 0755));
	CHECK(nlinks("d") == 3);

	/* names */
	memset(name, 'a', 255);
	name[255] = '\0';
	OK(mkfile(name, "x"));
	OK(unlink(P(name)));
	memset(name, 'b', 256);
	name[256] = '\0';
	ERR(open(P(name), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);

	/* unlink / rmdir */
	ERR(unlink(P("d")), EISDIR);
	ERR(rmdir(P("f")), ENOTDIR);
	ERR(rmdir(P("d")), ENOTEMPTY);
	ERR(unlink(P("nope")), ENOENT);

	/* rename: plain, across directories, replacing, errors */
	OK(rename(P("f"), P("g")));
	ERR(stat(P("f"), &st), ENOENT);
	OK(rename(P("g"), P("d/sub/g")));
	OK(mkfile("h", "replacement"));
	OK(rename(P("h"), P("d/sub/g")));
	fd = open(P("d/sub/g"), O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 11 && memcmp(buf, "replacement", 11) == 0);
	if (fd >= 0)
		close(fd);
	ERR(rename(P("d"), P("d/sub/inside")), EINVAL);
	OK(mkdir(P("e"), 0755));
	OK(mkfile("e/file", "1"));
	ERR(rename(P("d/sub"), P("e")), ENOTEMPTY);
	ERR(rename(P("d/sub/g"), P("e")), EISDIR);
	OK(mkdir(P("empty"), 0755));
	ERR(rename(P("empty"), P("e/file")), ENOTDIR);
	OK(rename(P("d/sub"), P("empty")));	/* directory replaces an empty one */
	CHECK(nlinks("d") == 2);
	ERR(renameat2(AT_FDCWD, P("e/file"), AT_FDCWD, P("empty/g"), RENAME_NOREPLACE), EEXIST);

	/* hard links and symlinks */
	OK(link(P("empty/g"), P("hl")));
	CHECK(nlinks("hl") == 2);
	ERR(link(P("e"), P("dirlink")), EPERM);
	ERR(link(P("empty/g"), P("e/file")), EEXIST);
	OK(unlink(P("empty/g")));
	CHECK(nlinks("hl") == 1);
	OK(symlink("hl", P("sl")));
	CHECK(readlink(P("sl"), buf, sizeof(buf)) == 2 && memcmp(buf, "hl", 2) == 0);
	CHECK(lstat(P("sl"), &st) == 0 && S_ISLNK(st.st_mode));
	ERR(readlink(P("hl"), buf, sizeof(buf)), EINVAL);

	/* chmod / chown / utimens */
	OK(chmod(P("hl"), 0600));
	CHECK(stat(P("hl"), &st) == 0 && (st.st_mode & 07777) == 0600);
	OK(chown(P("hl"), 1234, 5678));
	CHECK(stat(P("hl"), &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
	{
		struct timespec ts[2] = { { 1000, 5 }, { 2000, 7 } };

		OK(utimensat(AT_FDCWD, P("hl"), ts, 0));
		CHECK(stat(P("hl"), &st) == 0 && st.st_mtim.tv_sec == 2000 && st.st_mtim.tv_nsec == 7);
		CHECK(st.st_atim.tv_sec == 1000);
	}

	/* truncate / sparse / fallocate / seek */
	fd = open(P("sparse"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	OK(ftruncate(fd, 100 << 20));
	CHECK(fstat(fd, &st) == 0 && st.st_size == 100 << 20 && st.st_blocks < 100);
	CHECK(pwrite(fd, "data", 4, 50 << 20) == 4);
	CHECK(lseek(fd, 0, SEEK_DATA) >= (off_t)(49 << 20) && lseek(fd, 0, SEEK_DATA) <= (off_t)(50 << 20));
	CHECK(lseek(fd, 50 << 20, SEEK_HOLE) > (off_t)(50 << 20));
	ERR(lseek(fd, 200 << 20, SEEK_DATA), ENXIO);
	CHECK(pread(fd, buf, 4, 10 << 20) == 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
	OK(fallocate(fd, 0, 0, 8 << 20));
	CHECK(fstat(fd, &st) == 0 && st.st_blocks >= (8 << 20) / 512);
	CHECK(pread(fd, buf, 4, 1 << 20) == 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
	{
		struct stat before;

		CHECK(fstat(fd, &before) == 0);
		OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 8 << 20));
		CHECK(fstat(fd, &st) == 0 && st.st_blocks < before.st_blocks);
		CHECK(st.st_size == 100 << 20);
	}
	OK(fsync(fd));
	OK(fdatasync(fd));
	close(fd);

	/* mtime of overwrites: lazy while the file is written (fs/file.c
	 * MTIME_LAZY_NS), stamped at fsync and at close */
	fd = open(P("lazy"), O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	OK(fallocate(fd, 0, 0, 1 << 20));
	memset(wbuf, 'w', sizeof(wbuf));
	CHECK(pwrite(fd, wbuf, 4096, 0) == 4096);	/* written once: stamped */
	OK(fsync(fd));
	{
		struct timespec t0;

		usleep(1100000);
		clock_gettime(CLOCK_REALTIME, &t0);
		CHECK(pwrite(fd, wbuf, 4096, 8192) == 4096);	/* an overwrite: lazy */
		OK(fsync(fd));
		CHECK(fstat(fd, &st) == 0 && st.st_mtim.tv_sec >= t0.tv_sec);
		usleep(1100000);
		clock_gettime(CLOCK_REALTIME, &t0);
		CHECK(pwrite(fd, wbuf, 4096, 16384) == 4096);
		close(fd);
		CHECK(stat(P("lazy"), &st) == 0 && st.st_mtim.tv_sec >= t0.tv_sec);
	}

	/* unlink while open: data stays readable until close */
	OK(mkfile("open-unlinked", "still here"));
	fd = open(P("open-unlinked"), O_RDONLY);
	OK(unlink(P("open-unlinked")));
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 10 && memcmp(buf, "still here", 10) == 0);
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0);
	if (fd >= 0)
		close(fd);

	/* O_APPEND */
	fd = open(P("app"), O_CREAT | O_WRONLY | O_APPEND, 0644);
	CHECK(fd >= 0 && write(fd, "ab", 2) == 2 && write(fd, "cd", 2) == 2);
	if (fd >= 0)
		close(fd);
	CHECK(stat(P("app"), &st) == 0 && st.st_size == 4);

	/* xattrs: user.* only */
	OK(setxattr(P("hl"), "user.vm", "disk0", 5, 0));
	CHECK(getxattr(P("hl"), "user.vm", buf, sizeof(buf)) == 5 && memcmp(buf, "disk0", 5) == 0);
	CHECK(getxattr(P("hl"), "user.vm", NULL, 0) == 5);
	ERR(setxattr(P("hl"), "user.vm", "x", 1, XATTR_CREATE), EEXIST);
	ERR(setxattr(P("hl"), "user.other", "x", 1, XATTR_REPLACE), ENODATA);
	OK(setxattr(P("hl"), "user.vm", "disk1", 5, XATTR_REPLACE));
	CHECK(listxattr(P("hl"), buf, sizeof(buf)) == 8 && strcmp(buf, "user.vm") == 0);
	ERR(getxattr(P("hl"), "user.none", buf, sizeof(buf)), ENODATA);
	ERR(setxattr(P("hl"), "trusted.x", "x", 1, 0), EOPNOTSUPP);
	ERR(getxattr(P("hl"), "user.vm", buf, 2), ERANGE);
	OK(removexattr(P("hl"), "user.vm"));
	ERR(removexattr(P("hl"), "user.vm"), ENODATA);

	/* readdir sees exactly the entries */
	CHECK(count_entries("e") == 1);

	/* statfs */
	{
		struct statvfs sv;

		OK(statvfs(base, &sv));
		CHECK(sv.f_namemax == 255 && sv.f_blocks > 0 && sv.f_bfree <= sv.f_blocks);
		/* most of the free space, removed and reserved again at once:
		 * the freed blocks are not reusable before their transaction
		 * commits, so the allocation has to commit it first */
		for (int i = 0; i < 3; i++) {
			off_t len = (off_t)(sv.f_bavail * sv.f_frsize / 10 * 8);

			fd = open(P("big"), O_RDWR | O_CREAT, 0644);
			CHECK(fd >= 0);
			OK(fallocate(fd, 0, 0, len));
			close(fd);
			OK(unlink(P("big")));
		}
	}

	/* a bigger directory: hashed lookups, readdir completeness, removal */
	OK(mkdir(P("many"), 0755));
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "many/entry-%05d", i);
		if (mkfile(name, NULL) < 0) {
			fprintf(stderr, "create %s: %s\n", name, strerror(errno));
			failures++;
			break;
		}
	}
	CHECK(count_entries("many") == 3000);
	CHECK(stat(P("many/entry-02999"), &st) == 0);
	for (int i = 0; i < 3000; i += 2) {
		snprintf(name, sizeof(name), "many/entry-%05d", i);
		OK(unlink(P(name)));
	}
	CHECK(count_entries("many") == 1500);
	ERR(stat(P("many/entry-00000"), &st), ENOENT);

	if (failures)
		fprintf(stderr, "posix: %d failure(s)\n", failures);
	else
		printf("posix: all checks passed\n");
	return failures ? 1 : 0;
}
