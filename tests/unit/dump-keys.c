/*
 * dump-keys.c: print the keyword table and the command table, one entry
 * per line, for the man page drift check (tests/guards/man-drift.sh).
 */

#include <stdio.h>
#include <string.h>

#include "bsp.h"

int
main(int argc, char **argv)
{
	size_t	i;

	if (argc != 2) {
		fprintf(stderr, "usage: dump-keys keys|commands\n");
		return (1);
	}
	if (strcmp(argv[1], "keys") == 0) {
		for (i = 0; i < config_nkeys; i++) {
			if (config_keys[i].flags & CK_HIDDEN)
				continue;
			printf("%s\n", config_keys[i].name);
			/* Secrets may also be read from a file. */
			if (config_keys[i].type == CT_SECRET)
				printf("%s_file\n", config_keys[i].name);
			/* Or from Secrets Manager, but the credentials. */
			if (config_keys[i].type == CT_SECRET &&
			    strncmp(config_keys[i].name, "aws.secret_", 11) !=
			    0 && strcmp(config_keys[i].name,
			    "aws.session_token") != 0)
				printf("%s_arn\n", config_keys[i].name);
		}
		for (i = 0; i < config_ncollections; i++)
			printf("%s\n", config_collections[i].name);
		return (0);
	}
	if (strcmp(argv[1], "commands") == 0) {
		for (i = 0; i < ncommands; i++) {
			if (commands[i].sub != NULL)
				printf("%s %s\n", commands[i].name,
				    commands[i].sub);
			else
				printf("%s\n", commands[i].name);
		}
		return (0);
	}
	fprintf(stderr, "dump-keys: unknown table %s\n", argv[1]);
	return (1);
}
