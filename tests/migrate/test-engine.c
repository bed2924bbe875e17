/* test-engine.c — libvmfs-precopy end to end in one process: a fake
 * hypervisor (RAM buffer, a mutator thread that dirties pages and logs them
 * like a dirty log would) migrates to a destination thread over a
 * socketpair.  Checks: memory identical after a migration under load,
 * and every failure before the ack (cancel, destination gone during
 * pre-copy, state refused, pre-switchover or switchover hook refused,
 * guard) leaves the VM
 * running on the source and the destination discarding.  Again over
 * several connections (socketpairs handed over by open_connection), where
 * one connection failing must fail the whole migration the same way, and
 * against a destination that cannot open more connections (one granted).
 * And between protocol 3 (page runs) and a protocol 2 peer, both ways. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "precopy/stream.h"
#include "vmfs/precopy.h"

#define PAGES 4096u
#define PAGE 4096u

static int failures;
#define EXPECT(cond, ...) do { \
	if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); \
		printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

struct fake_vm {
	uint8_t *ram;
	_Atomic uint64_t dirty[PAGES / 64];
	atomic_bool run, quit, parked;
	atomic_int pauses, resumes;
	unsigned pages_per_ms;
	/* pages the guest is reported to have dirtied at every log sync while
	 * it runs: a dirty rate that does not depend on how the mutator thread
	 * is scheduled, so "cannot converge" holds on a loaded machine too */
	unsigned dirty_per_sync;
	uint32_t sync_cursor;
	pthread_t mutator;
	uint32_t gen;
	/* destination side */
	uint8_t *dst_ram;
	int fail_load;
	int dest_resumed;
	int hook_rc;
	int hook_calls, hook_aborts;
	int pre_rc, pre_calls;
	bool pre_ran_live;		/* pre_switchover found the VM running */
	atomic_int undos;		/* resume of a VM that was not paused */
	int kill_fd;			/* shut down when the state is loaded */
	/* extra connections: the source's open_connection makes a
	 * socketpair and queues the destination's end here */
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	int q[16], q_head, q_tail;
	int all_fds[32], nall;		/* both ends, closed at the end */
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void *mutator(void *p)
{
	struct fake_vm *vm = p;
	uint32_t cursor = 0;

	while (!atomic_load(&vm->quit)) {
		if (!atomic_load(&vm->run)) {
			atomic_store(&vm->parked, true);
			sleep_ms(1);
			continue;
		}
		atomic_store(&vm->parked, false);
		for (unsigned i = 0; i < vm->pages_per_ms; i++) {
			uint32_t *w = (uint32_t *)(void *)(vm->ram + (size_t)cursor * PAGE);

			vm->gen++;
			for (unsigned k = 0; k < PAGE / 4; k++)
				w[k] = cursor ^ vm->gen ^ k;
			/* Logged after the write, as a dirty log would be. */
			atomic_fetch_or(&vm->dirty[cursor / 64], 1ull << (cursor % 64));
			cursor = (cursor + 7) % (PAGES / 2);	/* upper half stays zero */
		}
		sleep_ms(1);
	}
	return NULL;
}

static int log_start(void *o) { (void)o; return 0; }
static int log_sync(void *o, unsigned r, uint64_t *bm)
{
	struct fake_vm *vm = o;

	(void)r;
	for (unsigned i = 0; vm->dirty_per_sync && atomic_load(&vm->run) &&
			     i < vm->dirty_per_sync; i++) {
		uint32_t pg = vm->sync_cursor++ % (PAGES / 2);	/* upper half stays zero */
		uint32_t *w = (uint32_t *)(void *)(vm->ram + (size_t)pg * PAGE);

		vm->gen++;
		for (unsigned k = 0; k < PAGE / 4; k++)
			w[k] = pg ^ vm->gen ^ k;
		atomic_fetch_or(&vm->dirty[pg / 64], 1ull << (pg % 64));
	}
	for (unsigned w = 0; w < PAGES / 64; w++)
		bm[w] |= atomic_exchange(&vm->dirty[w], 0);
	return 0;
}

static int do_pause(void *o)
{
	struct fake_vm *vm = o;

	atomic_store(&vm->run, false);
	while (!atomic_load(&vm->parked))
		sleep_ms(1);
	atomic_fetch_add(&vm->pauses, 1);
	return 0;
}

static int do_resume(void *o)
{
	struct fake_vm *vm = o;

	/* ops.resume also undoes pre_switchover when the pause never came */
	atomic_fetch_add(atomic_load(&vm->run) ? &vm->undos : &vm->resumes, 1);
	atomic_store(&vm->run, true);
	return 0;
}

static int pre_switchover(void *o)
{
	struct fake_vm *vm = o;

	vm->pre_calls++;
	vm->pre_ran_live = atomic_load(&vm->run) && !atomic_load(&vm->pauses);
	return vm->pre_rc;
}

static int save_state(void *o, void **buf, size_t *len)
{
	struct fake_vm *vm = o;

	*buf = malloc(sizeof(vm->gen));
	if (!*buf)
		return -ENOMEM;
	memcpy(*buf, &vm->gen, sizeof(vm->gen));
	*len = sizeof(vm->gen);
	return 0;
}

static int load_state(void *o, const void *buf, size_t len)
{
	struct fake_vm *vm = o;

	if (vm->kill_fd >= 0)
		shutdown(vm->kill_fd, SHUT_RDWR);	/* "destination died" */
	if (vm->fail_load)
		return -EINVAL;
	return len == sizeof(uint32_t) ? 0 : -EINVAL;
}

static int dest_resume(void *o)
{
	((struct fake_vm *)o)->dest_resumed++;
	return 0;
}

static int hook(void *o)
{
	struct fake_vm *vm = o;

	vm->hook_calls++;
	return vm->hook_rc;
}

static void hook_abort(void *o)
{
	((struct fake_vm *)o)->hook_aborts++;
}

static int connect_more(void *o, unsigned lane)
{
	struct fake_vm *vm = o;
	int sv[2];

	(void)lane;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -errno;
	pthread_mutex_lock(&vm->q_lock);
	vm->all_fds[vm->nall++] = sv[0];
	vm->all_fds[vm->nall++] = sv[1];
	vm->q[vm->q_tail++] = sv[1];
	pthread_cond_signal(&vm->q_cond);
	pthread_mutex_unlock(&vm->q_lock);
	/* The engine closes what it is given: hand it a duplicate. */
	return dup(sv[0]);
}

static int accept_more(void *o, unsigned lane)
{
	struct fake_vm *vm = o;
	struct timespec until;
	int fd = -ETIMEDOUT;

	(void)lane;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&vm->q_lock);
	while (vm->q_head == vm->q_tail &&
	       pthread_cond_timedwait(&vm->q_cond, &vm->q_lock, &until) == 0)
		;
	if (vm->q_head != vm->q_tail)
		fd = dup(vm->q[vm->q_head++]);
	pthread_mutex_unlock(&vm->q_lock);
	return fd;
}

static const struct vmfs_precopy_ops src_ops = {
	.log_start = log_start, .log_sync = log_sync, .pause = do_pause,
	.resume = do_resume, .save_state = save_state, .switchover = hook,
	.switchover_abort = hook_abort, .open_connection = connect_more,
	.pre_switchover = pre_switchover,
};
static const struct vmfs_precopy_ops dst_ops = {
	.load_state = load_state, .resume = dest_resume, .open_connection = accept_more,
};
/* A destination that can take one connection only. */
static const struct vmfs_precopy_ops dst_ops_single = {
	.load_state = load_state, .resume = dest_resume,
};

static const char psk[] = "a shared key of enough length";

struct dest_arg {
	struct fake_vm *vm;
	int fd;
	int rc;
	bool single;
};

static void *dest_main(void *p)
{
	struct dest_arg *a = p;
	struct vmfs_precopy_params pr = { .psk = psk, .psk_len = sizeof(psk) - 1,
					  .io_timeout_ms = 5000 };
	struct vmfs_precopy *m;

	a->rc = vmfs_precopy_new(&m, VMFS_PRECOPY_DEST, &pr,
				 a->single ? &dst_ops_single : &dst_ops, a->vm);
	if (a->rc)
		return NULL;
	a->rc = vmfs_precopy_add_region(m, 0, (uint64_t)PAGES * PAGE, a->vm->dst_ram);
	if (!a->rc)
		a->rc = vmfs_precopy_run(m, a->fd);
	vmfs_precopy_free(m);
	return NULL;
}

struct src_arg {
	struct vmfs_precopy *m;
	int fd;
	int rc;
};

static void *src_main(void *p)
{
	struct src_arg *a = p;

	a->rc = vmfs_precopy_run(a->m, a->fd);
	return NULL;
}

enum fault { NONE, CANCEL, DEST_GONE, LOAD_FAILS, DEST_DIES_AT_LOAD, HOOK_REFUSES,
	     PRE_REFUSES, GUARD_CANCEL, GUARD_FORCE, LANE_GONE, SINGLE_DEST, OLD_DEST,
	     OLD_SOURCE };

/* The cases that must complete (OLD_*: one side speaks protocol 2 only). */
static bool completes(enum fault f)
{
	return f == NONE || f == GUARD_FORCE || f == SINGLE_DEST || f == OLD_DEST ||
	       f == OLD_SOURCE;
}

/* `conns`: connections the source asks for. */
static int migrate(enum fault f, const char *name, unsigned conns)
{
	struct fake_vm vm = { .pages_per_ms = 4, .kill_fd = -1,
			      .q_lock = PTHREAD_MUTEX_INITIALIZER,
			      .q_cond = PTHREAD_COND_INITIALIZER };
	struct vmfs_precopy_params pr = { .psk = psk, .psk_len = sizeof(psk) - 1,
					  .io_timeout_ms = 5000, .connections = conns };
	struct dest_arg da = { .vm = &vm, .single = f == SINGLE_DEST };
	struct src_arg sa = { 0 };
	pthread_t dt, st;
	char *json = NULL;
	int sv[2];

	vm.ram = calloc(PAGES, PAGE);
	vm.dst_ram = calloc(PAGES, PAGE);
	if (!vm.ram || !vm.dst_ram || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		abort();
	/* Stale data on the destination must be overwritten (zero pages too). */
	memset(vm.dst_ram, 0x5a, (size_t)PAGES * PAGE);
	atomic_store(&vm.run, true);
	if (f == CANCEL || f == DEST_GONE || f == LANE_GONE) {
		/* Slow enough to act mid-way: 8 MiB of non-zero RAM (the
		 * lower half) at 8 MiB/s takes a second. */
		pr.max_bandwidth = 8 << 20;
		memset(vm.ram, 0x11, (size_t)PAGES / 2 * PAGE);
	}
	if (f == GUARD_CANCEL || f == GUARD_FORCE) {
		/* 8 MiB dirtied between any two syncs cannot be sent within
		 * a 1 ms target at any bandwidth this machine reaches; the
		 * mutator stays idle so only the sync hook writes the RAM */
		vm.pages_per_ms = 0;
		vm.dirty_per_sync = PAGES / 2;
		pr.downtime_ms = 1;
		pr.max_rounds = 3;
		pr.force_switchover = f == GUARD_FORCE;
	}
	vm.fail_load = f == LOAD_FAILS;
	vm.hook_rc = f == HOOK_REFUSES ? -EPERM : 0;
	vm.pre_rc = f == PRE_REFUSES ? VMFS_PRECOPY_EHANDOFF : 0;
	if (f == DEST_DIES_AT_LOAD)
		vm.kill_fd = sv[1];
	pthread_create(&vm.mutator, NULL, mutator, &vm);
	sleep_ms(20);
	/* A peer of protocol 2 (PAGES, not PAGE_RUNS): each engine reads
	 * mig_proto_max when created, the destination's in its thread. */
	mig_proto_max = f == OLD_SOURCE ? 2 : MIG_PROTO_MAX;
	if (vmfs_precopy_new(&sa.m, VMFS_PRECOPY_SOURCE, &pr, &src_ops, &vm) ||
	    vmfs_precopy_add_region(sa.m, 0, (uint64_t)PAGES * PAGE, vm.ram))
		abort();
	mig_proto_max = f == OLD_DEST ? 2 : MIG_PROTO_MAX;
	sa.fd = sv[0];
	da.fd = sv[1];
	pthread_create(&dt, NULL, dest_main, &da);
	pthread_create(&st, NULL, src_main, &sa);
	if (f == CANCEL || f == DEST_GONE || f == LANE_GONE) {
		/* Wait until pre-copy really runs, then strike. */
		for (int i = 0; i < 5000 && vmfs_precopy_status(sa.m) != VMFS_PRECOPY_ACTIVE; i++)
			sleep_ms(1);
		sleep_ms(100);
		if (f == CANCEL) {
			vmfs_precopy_cancel(sa.m);
		} else if (f == LANE_GONE) {
			/* The last extra connection breaks. */
			pthread_mutex_lock(&vm.q_lock);
			if (vm.nall)
				shutdown(vm.all_fds[vm.nall - 1], SHUT_RDWR);
			pthread_mutex_unlock(&vm.q_lock);
		} else {
			shutdown(sv[1], SHUT_RDWR);
		}
	}
	pthread_join(st, NULL);
	pthread_join(dt, NULL);
	mig_proto_max = MIG_PROTO_MAX;
	atomic_store(&vm.quit, true);
	pthread_join(vm.mutator, NULL);
	if (vmfs_precopy_stats_json(sa.m, &json))
		abort();

	if (completes(f)) {
		EXPECT(sa.rc == 0 && da.rc == 0, "%s: source %d dest %d (%s)", name, sa.rc,
		       da.rc, vmfs_precopy_last_error(sa.m));
		EXPECT(!memcmp(vm.ram, vm.dst_ram, (size_t)PAGES * PAGE),
		       "%s: destination memory differs", name);
		EXPECT(vm.pauses == 1 && vm.resumes == 0 && vm.dest_resumed == 1,
		       "%s: pauses %d resumes %d dest resumes %d", name, vm.pauses,
		       vm.resumes, vm.dest_resumed);
		EXPECT(vmfs_precopy_status(sa.m) == VMFS_PRECOPY_COMPLETED, "%s: status", name);
		EXPECT(strstr(json, "\"status\":\"completed\"") && strstr(json, "\"per_round\":[{"),
		       "%s: stats %s", name, json);
		EXPECT(vm.hook_calls == 1 && vm.hook_aborts == 0, "%s: hook calls", name);
		EXPECT(vm.pre_calls == 1 && vm.pre_ran_live && vm.undos == 0,
		       "%s: pre_switchover calls %d, VM running %d, undone %d", name,
		       vm.pre_calls, vm.pre_ran_live, vm.undos);
		EXPECT(strstr(json, "\"pre_switchover_us\":"), "%s: no pre_switchover_us", name);
		{
			char want[32];

			snprintf(want, sizeof(want), "\"connections\":%u",
				 f == SINGLE_DEST || conns < 2 ? 1 : conns);
			EXPECT(strstr(json, want), "%s: %s not in %s", name, want, json);
			snprintf(want, sizeof(want), "\"protocol\":%u",
				 f == OLD_DEST || f == OLD_SOURCE ? 2 : MIG_PROTO_MAX);
			EXPECT(strstr(json, want), "%s: %s not in %s", name, want, json);
		}
	} else {
		EXPECT(sa.rc < 0, "%s: source succeeded", name);
		EXPECT(da.rc < 0, "%s: destination did not discard", name);
		EXPECT(vm.dest_resumed == 0, "%s: destination resumed", name);
		/* The VM runs on the source: never paused, or paused and resumed. */
		EXPECT(vm.pauses == vm.resumes && atomic_load(&vm.run),
		       "%s: VM not running on the source (pauses %d resumes %d)",
		       name, vm.pauses, vm.resumes);
		EXPECT(vmfs_precopy_status(sa.m) ==
		       (f == CANCEL ? VMFS_PRECOPY_CANCELLED : VMFS_PRECOPY_FAILED),
		       "%s: status %s", name, vmfs_precopy_status_name(vmfs_precopy_status(sa.m)));
		EXPECT(vmfs_precopy_last_error(sa.m)[0], "%s: no error text", name);
		/* what pre_switchover did is undone, paused or not */
		EXPECT(vm.undos == (vm.pre_calls && !vm.pauses),
		       "%s: pre_switchover calls %d, pauses %d, undone %d", name, vm.pre_calls,
		       vm.pauses, vm.undos);
	}
	if (f == HOOK_REFUSES)
		EXPECT(sa.rc == VMFS_PRECOPY_EHANDOFF && vm.hook_aborts == 0, "%s: rc %d", name, sa.rc);
	if (f == PRE_REFUSES)
		EXPECT(sa.rc == VMFS_PRECOPY_EHANDOFF && vm.pre_calls == 1 && vm.pauses == 0 &&
		       vm.hook_calls == 0, "%s: rc %d pre %d pauses %d hook %d", name, sa.rc,
		       vm.pre_calls, vm.pauses, vm.hook_calls);
	if (f == GUARD_CANCEL)
		EXPECT(sa.rc == VMFS_PRECOPY_ENOCONVERGE && strstr(json, "\"guard\":\"max_rounds\""),
		       "%s: rc %d %s", name, sa.rc, json);
	printf("%s %-18s source: %s%s%s\n", failures ? "...." : "ok  ", name,
	       vmfs_precopy_status_name(vmfs_precopy_status(sa.m)),
	       sa.rc ? " - " : "", sa.rc ? vmfs_precopy_last_error(sa.m) : "");
	if (f == NONE || getenv("TEST_ENGINE_STATS"))
		printf("     stats: %.600s...\n", json);
	free(json);
	vmfs_precopy_free(sa.m);
	close(sv[0]);
	close(sv[1]);
	for (int i = 0; i < vm.nall; i++)
		close(vm.all_fds[i]);
	free(vm.ram);
	free(vm.dst_ram);
	return 0;
}

int main(void)
{
	migrate(NONE, "under-load", 1);
	migrate(CANCEL, "cancel", 1);
	migrate(DEST_GONE, "dest-gone-precopy", 1);
	migrate(LOAD_FAILS, "dest-refuses-state", 1);
	migrate(DEST_DIES_AT_LOAD, "dest-dies-at-load", 1);
	migrate(HOOK_REFUSES, "hook-refuses", 1);
	migrate(PRE_REFUSES, "pre-switchover-refuses", 1);
	migrate(GUARD_CANCEL, "guard-cancel", 1);
	migrate(GUARD_FORCE, "guard-force", 1);
	/* Protocol 3 (page runs) against a protocol 2 peer, both ways. */
	migrate(OLD_DEST, "v2-destination", 1);
	migrate(OLD_SOURCE, "v2-source", 1);
	migrate(OLD_DEST, "3conn-v2-dest", 3);
	/* Several connections. */
	migrate(NONE, "3conn-under-load", 3);
	migrate(CANCEL, "3conn-cancel", 3);
	migrate(DEST_GONE, "3conn-dest-gone", 3);
	migrate(LANE_GONE, "3conn-lane-gone", 3);
	migrate(DEST_DIES_AT_LOAD, "3conn-dest-dies", 3);
	migrate(GUARD_FORCE, "3conn-guard-force", 3);
	migrate(SINGLE_DEST, "3conn-single-dest", 3);
	return failures ? 1 : 0;
}
