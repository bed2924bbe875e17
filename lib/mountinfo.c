/* mountinfo.c — finding a vmfs mount in /proc/self/mountinfo. */
#include "config.h"
#include "mountinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

/* mountinfo escapes blanks and backslashes in paths as \ooo; undo it in
 * place. */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*d++ = *s;
		}
	}
	*d = '\0';
}

/* *out = strdup(s) unless out is NULL; false when out of memory. */
static bool dup_to(char **out, const char *s)
{
	if (!out)
		return true;
	*out = strdup(s);
	return *out != NULL;
}

int vmfs_mountinfo_find(bool by_dev, dev_t dev, const char *src, char **src_out, char **mp_out)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	if (!f)
		return -errno;
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
		char *save = NULL, *field[6], *fstype, *source, *tok;
		unsigned maj, min;
		int i;

		line[strcspn(line, "\n")] = '\0';
		for (i = 0; i < 6; i++) {
			field[i] = strtok_r(i ? NULL : line, " ", &save);
			if (!field[i])
				break;
		}
		if (i < 6)
			continue;
		/* optional fields end with a lone "-" */
		while ((tok = strtok_r(NULL, " ", &save)) && strcmp(tok, "-") != 0)
			;
		fstype = strtok_r(NULL, " ", &save);
		source = strtok_r(NULL, " ", &save);
		if (!tok || !fstype || !source || strcmp(fstype, VMFS_FSTYPE) != 0)
			continue;
		unescape(source);
		unescape(field[4]);
		if (by_dev) {
			if (sscanf(field[2], "%u:%u", &maj, &min) != 2 || makedev(maj, min) != dev)
				continue;
		} else if (!src || strcmp(source, src) != 0) {
			continue;
		}
		if (src_out)
			*src_out = NULL;
		if (mp_out)
			*mp_out = NULL;
		if (dup_to(src_out, source) && dup_to(mp_out, field[4])) {
			rc = 1;
			continue;
		}
		if (src_out) {
			free(*src_out);
			*src_out = NULL;
		}
		rc = -ENOMEM;
	}
	free(line);
	fclose(f);
	return rc;
}
