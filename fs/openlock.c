/* openlock.c — placeholder: being implemented (see openlock.h). */
#include "config.h"
#include "openlock.h"

#include <errno.h>
#include <stddef.h>

int openlock_tab_new(const char *ls, struct openlock_tab **out)
{
	(void)ls;
	*out = NULL;
	return -ENOSYS;
}
void openlock_tab_free(struct openlock_tab *t) { (void)t; }
int openlock_open(struct openlock_tab *t, uint64_t ino, bool write, bool multiwriter, pid_t pid,
		  const char *program, struct ol_ref **out, char *why, size_t whylen)
{
	(void)t; (void)ino; (void)write; (void)multiwriter; (void)pid; (void)program;
	(void)why; (void)whylen;
	*out = NULL;
	return -ENOSYS;
}
int openlock_check(const struct ol_ref *r) { (void)r; return -ENOSYS; }
uint64_t openlock_epoch(const struct ol_ref *r) { (void)r; return 0; }
void openlock_close(struct ol_ref *r) { (void)r; }
int openlock_prepare(struct openlock_tab *t, uint64_t ino, const char *vm)
{
	(void)t; (void)ino; (void)vm;
	return -ENOSYS;
}
int openlock_unprepare(struct openlock_tab *t, uint64_t ino) { (void)t; (void)ino; return -ENOSYS; }
