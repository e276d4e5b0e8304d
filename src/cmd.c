/*
 * cmd.c: the administrative commands (bedrock-sso-proxy COMMAND ...). They
 * work on the configured database and may run while the daemon does.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsp.h"

const struct command commands[] = {
	{ NULL, NULL, NULL, NULL, NULL }
};
const size_t ncommands = 0;

static void
command_usage(FILE *f)
{
	size_t	i;

	fprintf(f, "commands:\n");
	for (i = 0; i < ncommands; i++)
		fprintf(f, "  %s%s%s %s\n", commands[i].name,
		    commands[i].sub != NULL ? " " : "",
		    commands[i].sub != NULL ? commands[i].sub : "",
		    commands[i].args != NULL ? commands[i].args : "");
}

/* Find and run a command; returns the exit status. */
int
command_run(int argc, char **argv)
{
	size_t	i;

	for (i = 0; i < ncommands; i++) {
		if (strcmp(argv[0], commands[i].name) != 0)
			continue;
		if (commands[i].sub == NULL)
			return (commands[i].fn(argc, argv));
		if (argc > 1 && strcmp(argv[1], commands[i].sub) == 0)
			return (commands[i].fn(argc - 1, argv + 1));
	}
	fprintf(stderr, "%s: unknown command \"%s\"\n", BSP_NAME, argv[0]);
	command_usage(stderr);
	return (1);
}
