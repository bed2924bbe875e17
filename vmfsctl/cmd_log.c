/* cmd_log.c — vmfsctl log: dump the daemon's in-memory log (blackbox). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfsctl.h"

int cmd_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	vmfs_dlm_t *h = NULL;
	char *text = NULL;
	size_t len;
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			printf("usage: vmfsctl log\n");
			return VMFSCTL_EXIT_OK;
		}
		return vmfsctl_usage("log");
	}
	if (optind != argc)
		return vmfsctl_usage("log");
	ret = vmfsctl_connect("vmfsctl", &h);
	if (ret)
		goto out;
	ret = vmfs_dlm_query(h, "log", NULL, &text);
	if (ret < 0) {
		vmfsctl_err("cannot read the log of vmfs-dlmd: %s", vmfsctl_strerror(ret));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	len = strlen(text);
	fwrite(text, 1, len, stdout);
	if (len && text[len - 1] != '\n')
		putchar('\n');
	ret = VMFSCTL_EXIT_OK;
out:
	free(text);
	vmfs_dlm_close(h);
	return ret;
}
