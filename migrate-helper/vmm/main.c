/* main.c — vmfs-vmm: options, vCPU run control, the main loop. */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "vmfs/dlm.h"
#include "vmfs/handoff.h"

static const char *const state_names[] = {
	[VM_RUNNING] = "running",
	[VM_PAUSED] = "paused",
	[VM_INMIGRATE] = "inmigrate",
	[VM_POSTMIGRATE] = "postmigrate",
	[VM_CRASHED] = "crashed",
	[VM_STOPPED] = "stopped",
};

const char *vm_state_name(enum vm_state s)
{
	return state_names[s];
}

void vm_set_state(struct vmm *v, enum vm_state s)
{
	pthread_mutex_lock(&v->mig_lock);
	if (v->state != s)
		log_info("vm %s: %s -> %s", v->cfg.name, state_names[v->state], state_names[s]);
	v->state = s;
	pthread_mutex_unlock(&v->mig_lock);
}

/* --- vCPU run control ------------------------------------------------ */

bool vcpu_park(struct vcpu *c)
{
	struct vmm *v = c->vm;
	bool go_on;

	pthread_mutex_lock(&v->cpu_lock);
	v->parked++;
	pthread_cond_broadcast(&v->cpu_cond);
	while (!atomic_load(&v->run_enabled) && !atomic_load(&v->quit))
		pthread_cond_wait(&v->cpu_cond, &v->cpu_lock);
	v->parked--;
	go_on = !atomic_load(&v->quit);
	pthread_mutex_unlock(&v->cpu_lock);
	c->throttle_mark_ms = now_mono_ms();
	return go_on;
}

/* A vCPU thread that stops for good (an unrecoverable exit) says so:
 * vm_pause must not wait for it to park. */
void vcpu_gone(struct vcpu *c)
{
	struct vmm *v = c->vm;

	pthread_mutex_lock(&v->cpu_lock);
	v->gone++;
	pthread_cond_broadcast(&v->cpu_cond);
	pthread_mutex_unlock(&v->cpu_lock);
}

int cpus_start(struct vmm *v, bool running)
{
	atomic_store(&v->run_enabled, running);
	for (unsigned i = 0; i < v->ncpus; i++) {
		struct vcpu *c = &v->cpus[i];
		int rc = pthread_create(&c->thread, NULL, v->accel->vcpu_thread, c);

		if (rc)
			return -rc;
		c->thread_started = true;
	}
	return 0;
}

/* Stop every vCPU at a point where its state can be saved. */
int vm_pause(struct vmm *v)
{
	struct timespec until;
	int rc = 0;

	pthread_mutex_lock(&v->cpu_lock);
	atomic_store(&v->run_enabled, false);
	while (v->parked + v->gone < v->ncpus) {
		for (unsigned i = 0; i < v->ncpus; i++)
			v->accel->kick(&v->cpus[i]);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 10 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		/* Re-kick on timeout: a kick can land between two KVM_RUNs. */
		rc = pthread_cond_timedwait(&v->cpu_cond, &v->cpu_lock, &until);
		if (rc && rc != ETIMEDOUT)
			break;
		rc = 0;
	}
	/* A crashed vCPU has no state worth moving: refuse the pause. */
	if (!rc && v->gone)
		rc = EIO;
	pthread_mutex_unlock(&v->cpu_lock);
	return -rc;
}

void vm_resume(struct vmm *v)
{
	pthread_mutex_lock(&v->cpu_lock);
	atomic_store(&v->run_enabled, true);
	pthread_cond_broadcast(&v->cpu_cond);
	pthread_mutex_unlock(&v->cpu_lock);
}

/* Auto-converge: a vCPU at throttle p% sleeps p/(100-p) of its run time. */
void vcpu_throttle(struct vcpu *c)
{
	unsigned p = atomic_load(&c->vm->throttle);
	uint64_t now, ran, ms;

	if (!p)
		return;
	now = now_mono_ms();
	ran = now - c->throttle_mark_ms;
	if (ran < 10)
		return;
	ms = ran * p / (100 - p);
	if (ms > 200)
		ms = 200;
	/* In 2 ms steps: a pause (the switchover) must not wait out a whole
	 * sleep of up to 200 ms - the VM is already stopped, so that was
	 * downtime (bench-migrate.sh at 50 MiB/s, throttle 90%: 164 ms). */
	for (uint64_t end = now + ms; atomic_load(&c->vm->run_enabled) &&
	     !atomic_load(&c->vm->quit) && (now = now_mono_ms()) < end;) {
		struct timespec ts = { .tv_sec = 0,
				       .tv_nsec = (long)(end - now > 2 ? 2 : end - now) * 1000000 };

		nanosleep(&ts, NULL);
	}
	c->throttle_mark_ms = now_mono_ms();
}

static void cpus_stop(struct vmm *v)
{
	pthread_mutex_lock(&v->cpu_lock);
	atomic_store(&v->quit, true);
	pthread_cond_broadcast(&v->cpu_cond);
	pthread_mutex_unlock(&v->cpu_lock);
	for (unsigned i = 0; i < v->ncpus; i++) {
		if (!v->cpus[i].thread_started)
			continue;
		v->accel->kick(&v->cpus[i]);
		pthread_join(v->cpus[i].thread, NULL);
	}
}

/* --- options --------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vmfs-vmm [OPTIONS] --image FILE --ctrl SOCKET\n"
"       vmfs-vmm --client SOCKET COMMAND [ARGS]\n"
"A small KVM hypervisor that runs a test guest and live-migrates it\n"
"(libvmfs-precopy).  See vmfs-vmm(8).\n\n"
"  -m, --ram MIB            guest RAM (default 64)\n"
"  -c, --cpus N             vCPUs (default 1, max %d)\n"
"  -i, --image FILE         flat binary (loaded at 1 MiB) or multiboot ELF\n"
"      --accel NAME         kvm, thread or auto (default auto: kvm if /dev/kvm)\n"
"      --native-guest SO    guest module for the thread accelerator\n"
"  -s, --serial FILE        append the serial console to FILE\n"
"  -d, --disk FILE          paravirtual block device backing file (O_DIRECT)\n"
"      --mac MAC            the NIC's MAC address (default 52:54:00:12:34:56)\n"
"  -S, --ctrl SOCKET        control socket (status, migrate, cancel, stop)\n"
"      --name NAME          VM name (default vm0)\n"
"      --incoming HOST:PORT wait for an incoming migration (port 0: any)\n"
"      --psk-file FILE      migration pre-shared key (16..64 bytes)\n"
"      --tap IFNAME         the NIC's tap device (created; %%d: first free number)\n"
"      --bridge BR          add the tap to bridge BR (the host's VM network)\n"
"      --announce-if IF     also send the RARP announcements straight out of IF\n"
"      --handoff            switchover hook: the disk-lock handoff of NAME in\n"
"                           this process (vmfs-dlmd on this host)\n"
"      --handoff-exec PROG  switchover hook: PROG handoff|abort NAME\n"
"      --dirty-rate KIB     guest dirties KiB per second (default 0)\n"
"      --work-mib MIB       guest memory it dirties and verifies (default all)\n"
"      --prefill            guest fills all of that memory once at boot\n"
"      --record-ms MS       guest writes a disk record every MS (default 10)\n"
"      --downtime-ms MS     migration downtime target (default 300)\n"
"      --max-bandwidth B    migration bandwidth cap, bytes/s (default none)\n"
"      --max-rounds N       guard (default 30)\n"
"      --migrate-connections N  TCP connections per outgoing migration,\n"
"                           pages striped across them (1..16, default 1)\n"
"      --force-switchover   when the guard trips, switch over (default cancel)\n"
"      --auto-converge      throttle the guest when not converging\n"
"      --verify-ram         SHA-256 of RAM at switchover on both sides\n"
"      --log-file FILE      also log to FILE\n"
"  -v, --debug              debug logging\n"
"  -h, --help               this text\n"
"  -V, --version            version and features\n", VMM_MAX_CPUS);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (b[i] > 255)
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static int read_psk(struct vmm *v)
{
	int fd, rc;
	ssize_t n;

	if (!v->cfg.psk_file) {
		log_err("--psk-file is required for migration");
		return -EINVAL;
	}
	fd = open(v->cfg.psk_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, v->psk, sizeof(v->psk));
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	while (n > 0 && (v->psk[n - 1] == '\n' || v->psk[n - 1] == '\r'))
		n--;
	if (n < 16) {
		log_err("%s: the key must be 16 to 64 bytes", v->cfg.psk_file);
		return -EINVAL;
	}
	v->psk_len = (size_t)n;
	return 0;
}

enum {
	OPT_ACCEL = 256, OPT_NATIVE, OPT_MAC, OPT_NAME, OPT_INCOMING, OPT_PSK,
	OPT_ANNOUNCE, OPT_TAP, OPT_BRIDGE, OPT_HANDOFF, OPT_RATE, OPT_WORK, OPT_RECORD, OPT_DOWNTIME,
	OPT_BW, OPT_ROUNDS, OPT_FORCE, OPT_AUTOCONV, OPT_VERIFY, OPT_LOGFILE,
	OPT_CLIENT, OPT_PREFILL, OPT_CONNS, OPT_HANDOFF_INPROC,
};

static const struct option long_opts[] = {
	{ "ram", required_argument, NULL, 'm' },
	{ "cpus", required_argument, NULL, 'c' },
	{ "image", required_argument, NULL, 'i' },
	{ "accel", required_argument, NULL, OPT_ACCEL },
	{ "native-guest", required_argument, NULL, OPT_NATIVE },
	{ "serial", required_argument, NULL, 's' },
	{ "disk", required_argument, NULL, 'd' },
	{ "mac", required_argument, NULL, OPT_MAC },
	{ "ctrl", required_argument, NULL, 'S' },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "psk-file", required_argument, NULL, OPT_PSK },
	{ "announce-if", required_argument, NULL, OPT_ANNOUNCE },
	{ "tap", required_argument, NULL, OPT_TAP },
	{ "bridge", required_argument, NULL, OPT_BRIDGE },
	{ "handoff-exec", required_argument, NULL, OPT_HANDOFF },
	{ "handoff", no_argument, NULL, OPT_HANDOFF_INPROC },
	{ "dirty-rate", required_argument, NULL, OPT_RATE },
	{ "work-mib", required_argument, NULL, OPT_WORK },
	{ "record-ms", required_argument, NULL, OPT_RECORD },
	{ "downtime-ms", required_argument, NULL, OPT_DOWNTIME },
	{ "max-bandwidth", required_argument, NULL, OPT_BW },
	{ "max-rounds", required_argument, NULL, OPT_ROUNDS },
	{ "force-switchover", no_argument, NULL, OPT_FORCE },
	{ "auto-converge", no_argument, NULL, OPT_AUTOCONV },
	{ "verify-ram", no_argument, NULL, OPT_VERIFY },
	{ "prefill", no_argument, NULL, OPT_PREFILL },
	{ "migrate-connections", required_argument, NULL, OPT_CONNS },
	{ "log-file", required_argument, NULL, OPT_LOGFILE },
	{ "client", required_argument, NULL, OPT_CLIENT },
	{ "debug", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = x;
	return 0;
}

/* Returns 0 to run, 1 to exit successfully, -EINVAL on bad usage. */
static int parse_args(struct vmm *v, int argc, char **argv, const char **client)
{
	struct vmm_config *c = &v->cfg;
	uint64_t x;
	int opt;

	c->ram_size = 64ull << 20;
	c->ncpus = 1;
	c->accel = "auto";
	c->name = "vm0";
	c->record_interval_ms = 10;
	memcpy(c->mac, (const uint8_t[]){ 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, 6);
	while ((opt = getopt_long(argc, argv, "+m:c:i:s:d:S:vhV", long_opts, NULL)) != -1) {
		x = 0;
		if (optarg && (opt == 'm' || opt == 'c') && parse_u64(optarg, &x))
			return -EINVAL;
		if (optarg && opt >= OPT_RATE && opt <= OPT_ROUNDS && parse_u64(optarg, &x))
			return -EINVAL;
		switch (opt) {
		case 'm': c->ram_size = x << 20; break;
		case 'c': c->ncpus = (unsigned)x; break;
		case 'i': c->image = optarg; break;
		case OPT_ACCEL: c->accel = optarg; break;
		case OPT_NATIVE: c->native_guest = optarg; break;
		case 's': c->serial_log = optarg; break;
		case 'd': c->disk = optarg; break;
		case OPT_MAC:
			if (parse_mac(optarg, c->mac))
				return -EINVAL;
			break;
		case 'S': c->ctrl_path = optarg; break;
		case OPT_NAME: c->name = optarg; break;
		case OPT_INCOMING: c->incoming = optarg; break;
		case OPT_PSK: c->psk_file = optarg; break;
		case OPT_ANNOUNCE: c->announce_if = optarg; break;
		case OPT_TAP: c->tap = optarg; break;
		case OPT_BRIDGE: c->bridge = optarg; break;
		case OPT_HANDOFF: c->handoff_exec = optarg; break;
		case OPT_HANDOFF_INPROC: c->handoff_inproc = true; break;
		case OPT_RATE: c->dirty_rate_kib = (uint32_t)x; break;
		case OPT_WORK: c->work_mib = (uint32_t)x; break;
		case OPT_RECORD: c->record_interval_ms = (uint32_t)x; break;
		case OPT_DOWNTIME: c->downtime_ms = (unsigned)x; break;
		case OPT_BW: c->max_bandwidth = x; break;
		case OPT_ROUNDS: c->max_rounds = (unsigned)x; break;
		case OPT_CONNS:
			if (parse_u64(optarg, &x) || x < 1 || x > 16) {
				fprintf(stderr, "--migrate-connections wants 1..16\n");
				return -EINVAL;
			}
			c->migrate_connections = (unsigned)x;
			break;
		case OPT_FORCE: c->force_switchover = true; break;
		case OPT_AUTOCONV: c->auto_converge = true; break;
		case OPT_VERIFY: c->verify_ram = true; break;
		case OPT_PREFILL: c->prefill = true; break;
		case OPT_LOGFILE: c->log_file = optarg; break;
		case OPT_CLIENT: *client = optarg; return 0;
		case 'v': c->debug = true; break;
		case 'h': usage(stdout); return 1;
		case 'V':
			printf("vmfs-vmm %s\nfeatures: accel=kvm,thread migration=precopy "
			       "stream=v1 auth=hmac-sha256 blk=pio-o_direct serial=com1 "
			       "announce=rarp loader=flat,multiboot-elf handoff=exec,in-process\n",
			       PACKAGE_VERSION);
			return 1;
		default: return -EINVAL;
		}
	}
	if (!c->image || !c->ctrl_path || !c->ncpus || c->ncpus > VMM_MAX_CPUS ||
	    optind != argc)
		return -EINVAL;
	if (c->handoff_inproc && c->handoff_exec) {
		fprintf(stderr, "--handoff and --handoff-exec are two ways of the same hook: "
			"give one\n");
		return -EINVAL;
	}
	if ((c->handoff_inproc || c->handoff_exec) &&
	    strlen(c->name) > VMFS_HANDOFF_RETURN_VM_MAX) {
		fprintf(stderr, "--handoff: the VM name is in its disk claims' tags, at most %d "
			"bytes\n", VMFS_HANDOFF_RETURN_VM_MAX);
		return -EINVAL;
	}
	return 0;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static const struct accel_ops *pick_accel(const char *name)
{
	if (!strcmp(name, "kvm"))
		return &accel_kvm;
	if (!strcmp(name, "thread"))
		return &accel_thread;
	if (!strcmp(name, "auto"))
		return access("/dev/kvm", R_OK | W_OK) == 0 ? &accel_kvm : &accel_thread;
	return NULL;
}

int main(int argc, char **argv)
{
	static struct vmm vm;
	struct vmm *v = &vm;
	const char *client = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	struct vmfs_log_opts lo = { .ident = "vmfs-vmm", .to_stderr = true,
				    .blackbox_size = 64 * 1024 };
	int rc, lfd = -1;

	rc = parse_args(v, argc, argv, &client);
	if (client)
		return control_client(client, argc - optind, argv + optind);
	if (rc) {
		if (rc < 0)
			usage(stderr);
		return rc < 0 ? 2 : 0;
	}
	lo.priority = v->cfg.debug ? LOG_DEBUG : LOG_INFO;
	lo.file = v->cfg.log_file;
	vmfs_log_init(&lo);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	pthread_mutex_init(&v->cpu_lock, NULL);
	pthread_cond_init(&v->cpu_cond, NULL);
	pthread_mutex_init(&v->dev_lock, NULL);
	pthread_mutex_init(&v->mig_lock, NULL);
	v->incoming_fd = -1;
	v->serial_fd = v->disk_fd = v->tap_fd = -1;	/* the exit path closes what is >= 0 */
	v->ncpus = v->cfg.ncpus;
	v->accel = pick_accel(v->cfg.accel);
	if (!v->accel) {
		log_err("unknown accelerator %s", v->cfg.accel);
		rc = -EINVAL;
		goto out;
	}
	v->cpus = calloc(v->ncpus, sizeof(*v->cpus));
	if (!v->cpus) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < v->ncpus; i++) {
		v->cpus[i].vm = v;
		v->cpus[i].idx = i;
		v->cpus[i].fd = -1;
	}
	if (v->cfg.psk_file || v->cfg.incoming) {
		rc = read_psk(v);
		if (rc)
			goto out;
	}
	rc = ram_init(v);
	if (rc) {
		log_err("RAM of %llu MiB: %s", (unsigned long long)(v->cfg.ram_size >> 20),
			strerror(-rc));
		goto out;
	}
	rc = image_load(v);
	if (rc) {
		log_err("image %s: %s", v->cfg.image, strerror(-rc));
		goto out;
	}
	bootinfo_setup(v);
	rc = devices_init(v);
	if (rc) {
		log_err("devices: %s", strerror(-rc));
		goto out;
	}
	rc = net_init(v);	/* logs its own errors */
	if (rc)
		goto out;
	rc = v->accel->init(v);
	if (rc) {
		log_err("accelerator %s: %s", v->accel->name, strerror(-rc));
		goto out;
	}
	lfd = control_listen(v->cfg.ctrl_path);
	if (lfd < 0) {
		rc = lfd;
		log_err("control socket %s: %s", v->cfg.ctrl_path, strerror(-rc));
		goto out;
	}
	if (v->cfg.incoming) {
		rc = incoming_setup(v);
		if (rc)
			goto out;
		v->state = VM_INMIGRATE;
		rc = cpus_start(v, false);
		if (!rc)
			rc = incoming_start(v);
	} else {
		v->state = VM_RUNNING;
		rc = cpus_start(v, true);
	}
	if (rc)
		goto out;
	log_info("vm %s: %s, %u vCPU, %llu MiB, accel %s, control %s", v->cfg.name,
		 v->cfg.incoming ? "waiting for a migration" : "running", v->ncpus,
		 (unsigned long long)(v->ram_size >> 20), v->accel->name, v->cfg.ctrl_path);
	while (!got_signal && !atomic_load(&v->exit_requested))
		control_serve(v, lfd);
	rc = v->exit_code;
out:
	migrate_shutdown(v);
	handoff_free(v);
	if (v->cpus)
		cpus_stop(v);
	if (lfd >= 0) {
		close(lfd);
		unlink(v->cfg.ctrl_path);
	}
	if (v->accel && v->accel->destroy)
		v->accel->destroy(v);
	devices_fini(v);
	net_fini(v);
	vmfs_log_fini();
	return rc < 0 ? 1 : rc;
}
