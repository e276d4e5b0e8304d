/*
 * test-notify.c: the daemon tells systemd (Type=notify) it is ready, and
 * that it is stopping, through $NOTIFY_SOCKET, without libsystemd. Node
 * cannot bind a datagram socket in the file system, so this one runs the
 * real daemon ($BSP_BIN) from C.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsp.h"
#include "tap.h"

/* Wait up to ms for a datagram; its text in buf, or "" on timeout. */
static void
recv_msg(int s, char *buf, size_t len, int ms)
{
	struct pollfd	pfd = { s, POLLIN, 0 };
	ssize_t		n;

	buf[0] = '\0';
	if (poll(&pfd, 1, ms) <= 0)
		return;
	if ((n = recv(s, buf, len - 1, 0)) > 0)
		buf[n] = '\0';
}

int
main(void)
{
	char			 dir[] = "/tmp/bsp-notify.XXXXXX", *sockpath, *cfgpath;
	char			*env, msg[256], *cmd;
	const char		*bin = getenv("BSP_BIN");
	struct sockaddr_un	 sun;
	pid_t			 pid;
	int			 s, status = -1, i;
	FILE			*f;

	if (bin == NULL)
		bin = "./bedrock-sso-proxy";
	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&sockpath, "%s/notify", dir);
	xasprintf(&cfgpath, "%s/config.yaml", dir);
	if ((f = fopen(cfgpath, "w")) == NULL)
		fatal("fopen");
	fprintf(f, "server:\n  port: 0\ndatabase:\n  url: sqlite://%s/db/proxy"
	    ".db\njwt:\n  issuer: https://notify.test\nlogging:\n  level: "
	    "warn\n", dir);
	fclose(f);
	chmod(cfgpath, 0600);

	if ((s = socket(AF_UNIX, SOCK_DGRAM, 0)) == -1)
		fatal("socket");
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	bsp_strlcpy(sun.sun_path, sockpath, sizeof sun.sun_path);
	if (bind(s, (struct sockaddr *)&sun, sizeof sun) == -1)
		fatal("bind");

	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		xasprintf(&env, "NOTIFY_SOCKET=%s", sockpath);
		putenv(env);
		unsetenv("AWS_ACCESS_KEY_ID");
		setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
		execl(bin, bin, "-f", cfgpath, (char *)NULL);
		_exit(127);
	}
	recv_msg(s, msg, sizeof msg, 15000);
	is_str(msg, "READY=1", "READY=1 once listening");

	kill(pid, SIGHUP);
	recv_msg(s, msg, sizeof msg, 5000);
	is_str(msg, "READY=1", "READY=1 again after a reload");

	kill(pid, SIGTERM);
	recv_msg(s, msg, sizeof msg, 5000);
	is_str(msg, "STOPPING=1", "STOPPING=1 on SIGTERM");
	for (i = 0; i < 200; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(50000);
	}
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exits 0");

	close(s);
	xasprintf(&cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("cleanup failed");
	free(cmd);
	free(sockpath);
	free(cfgpath);
	return (tap_done());
}
