/*
 * ready.c: start a daemon, wait for its sd_notify READY=1, stop it.
 *
 * For bench/startup.sh: `hyperfine 'ready bedrock-sso-proxy -d -f cfg'`
 * times start-up to ready (plus a fork and a SIGKILL). ready listens on a
 * datagram socket of its own, passes it as NOTIFY_SOCKET, runs the command
 * and returns as soon as READY=1 arrives; then the daemon is killed
 * (SIGKILL: its shutdown is not start-up). With -r SECS it waits SECS
 * seconds after READY=1 and prints the daemon's VmRSS in kB (idle RSS),
 * then stops it with SIGTERM. Exit 1 if the daemon exits or is not ready
 * within 10 s.
 *
 * Usage: ready [-r secs] command [args...]
 */

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long
vmrss(pid_t pid)
{
	char	path[64], line[256];
	FILE	*f;
	long	kb = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	return (kb);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_un	 sun;
	struct pollfd		 pfd;
	char			 buf[512];
	ssize_t			 n;
	pid_t			 pid;
	int			 fd, i, status, rss_wait = -1, ready = 0;

	if (argc > 2 && strcmp(argv[1], "-r") == 0) {
		rss_wait = (int)strtol(argv[2], NULL, 10);
		argv += 2;
		argc -= 2;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: ready [-r secs] command [args...]\n");
		return (2);
	}
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return (1);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "/tmp/bsp-ready.%d",
	    (int)getpid());
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		perror("bind");
		return (1);
	}
	setenv("NOTIFY_SOCKET", sun.sun_path, 1);
	if ((pid = fork()) == -1)
		return (1);
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (i = 0; i < 1000 && !ready; i++) {
		if (poll(&pfd, 1, 10) == 1) {
			n = recv(fd, buf, sizeof buf - 1, 0);
			if (n > 0) {
				buf[n] = '\0';
				ready = strstr(buf, "READY=1") != NULL;
			}
		} else if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	unlink(sun.sun_path);
	if (!ready) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fprintf(stderr, "ready: no READY=1\n");
		return (1);
	}
	if (rss_wait >= 0) {
		sleep((unsigned int)rss_wait);
		printf("%ld\n", vmrss(pid));
		kill(pid, SIGTERM);
	} else
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return (0);
}
