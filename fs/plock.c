/* plock.c — placeholder: being implemented (see plock.h). */
#include "config.h"
#include "plock.h"

#include <errno.h>
#include <stddef.h>

int plock_tab_new(const char *ls, struct plock_tab **out)
{
	(void)ls;
	*out = NULL;
	return -ENOSYS;
}
void plock_tab_free(struct plock_tab *t) { (void)t; }
int plock_setlk(struct plock_tab *t, uint64_t ino, uint64_t owner, pid_t pid, short type,
		uint64_t start, uint64_t end, bool wait)
{
	(void)t; (void)ino; (void)owner; (void)pid; (void)type; (void)start; (void)end; (void)wait;
	return -ENOSYS;
}
int plock_getlk(struct plock_tab *t, uint64_t ino, uint64_t owner, short *type,
		uint64_t *start, uint64_t *end, pid_t *pid)
{
	(void)t; (void)ino; (void)owner; (void)type; (void)start; (void)end; (void)pid;
	return -ENOSYS;
}
int plock_flock(struct plock_tab *t, uint64_t ino, uint64_t owner, int op)
{
	(void)t; (void)ino; (void)owner; (void)op;
	return -ENOSYS;
}
void plock_release_owner(struct plock_tab *t, uint64_t ino, uint64_t owner) { (void)t; (void)ino; (void)owner; }
void plock_release_flock(struct plock_tab *t, uint64_t ino, uint64_t owner) { (void)t; (void)ino; (void)owner; }
