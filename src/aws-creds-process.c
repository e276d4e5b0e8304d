/*
 * aws-creds-process.c: credential_process, run without blocking the loop:
 * /bin/sh -c CMD in its own process group, stdout read on the loop (at
 * most AWSCRED_PROCESS_MAX bytes), killed after its timeout, and reaped
 * with waitpid(WNOHANG) from a timer, never waited for on the loop. The
 * answer is parsed by awscred_parse_process() and handed to the caller's
 * callback.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "bsp.h"
#include "aws-creds.h"
#include "aws-creds-local.h"

#define AWSCRED_PROC_ERR	512	/* stderr kept for the message */
#define AWSCRED_REAP_MS_MAX	500

struct awscred_proc {
	pid_t		 pid;
	int		 out_fd;
	int		 err_fd;
	struct event	 out_ev;
	struct event	 err_ev;
	struct event	 timeout_ev;
	struct event	 reap_ev;
	long		 timeout_ms;
	long		 reap_ms;
	char		*out;		/* AWSCRED_PROCESS_MAX bytes */
	size_t		 outlen;
	char		 err[AWSCRED_PROC_ERR];
	size_t		 errlen;
	int		 timed_out;
	int		 too_large;
	int		 killed;
	char		*source;
	void		(*cb)(struct aws_creds *, const char *, void *);
	void		*arg;
	LIST_ENTRY(awscred_proc) entry;
};

static LIST_HEAD(, awscred_proc) awscred_procs =
    LIST_HEAD_INITIALIZER(awscred_procs);

static void	awscred_proc_free(struct awscred_proc *);
static void	awscred_proc_reap_schedule(struct awscred_proc *, long);

/* Kill the child's process group (it may have started others). */
static void
awscred_proc_kill(struct awscred_proc *p)
{
	if (p->killed)
		return;
	p->killed = 1;
	kill(-p->pid, SIGKILL);
	kill(p->pid, SIGKILL);
}

static void
awscred_proc_close(struct awscred_proc *p)
{
	if (p->out_fd != -1) {
		event_del(&p->out_ev);
		close(p->out_fd);
		p->out_fd = -1;
	}
	if (p->err_fd != -1) {
		event_del(&p->err_ev);
		close(p->err_fd);
		p->err_fd = -1;
	}
}

/* Both pipes closed: reap. */
static void
awscred_proc_check_eof(struct awscred_proc *p)
{
	if (p->out_fd == -1 && p->err_fd == -1)
		awscred_proc_reap_schedule(p, 0);
}

static void
awscred_proc_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;
	char			 buf[4096];
	ssize_t			 n;
	int			 is_out = (fd == p->out_fd);

	n = read(fd, buf, sizeof buf);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (is_out) {
			event_del(&p->out_ev);
			close(p->out_fd);
			p->out_fd = -1;
		} else {
			event_del(&p->err_ev);
			close(p->err_fd);
			p->err_fd = -1;
		}
		awscred_proc_check_eof(p);
		return;
	}
	if (is_out) {
		if (p->outlen + (size_t)n > AWSCRED_PROCESS_MAX) {
			p->too_large = 1;
			awscred_proc_kill(p);
			awscred_proc_close(p);
			awscred_proc_check_eof(p);
		} else {
			memcpy(p->out + p->outlen, buf, (size_t)n);
			p->outlen += (size_t)n;
		}
	} else if (p->errlen < sizeof p->err) {
		if ((size_t)n > sizeof p->err - p->errlen)
			n = (ssize_t)(sizeof p->err - p->errlen);
		memcpy(p->err + p->errlen, buf, (size_t)n);
		p->errlen += (size_t)n;
	}
	memzero(buf, sizeof buf);
}

static void
awscred_proc_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;

	log_trace(TRACE_UPSTREAM, "aws creds: credential_process (pid %ld) "
	    "timed out; killing it", (long)p->pid);
	p->timed_out = 1;
	awscred_proc_kill(p);
	awscred_proc_close(p);
	awscred_proc_check_eof(p);
}

/* The first line of stderr, escaped, for the message. */
static void
awscred_proc_stderr(struct awscred_proc *p, char *buf, size_t size)
{
	const char	*nl;
	size_t		 len = p->errlen;

	if ((nl = memchr(p->err, '\n', len)) != NULL)
		len = (size_t)(nl - p->err);
	if (len == 0) {
		*buf = '\0';
		return;
	}
	bsp_strlcpy(buf, ": ", size);
	awscred_clean(p->err, len, buf + 2, size - 2);
}

static void
awscred_proc_finish(struct awscred_proc *p, int status, int have_status)
{
	struct aws_creds	*c = NULL;
	char			*cause = NULL, *cause2 = NULL, err[200];

	if (p->cb == NULL) {
		awscred_proc_free(p);
		return;
	}
	awscred_proc_stderr(p, err, sizeof err);
	if (p->timed_out)
		xasprintf(&cause, "credential_process timed out after %ld s",
		    (p->timeout_ms + 999) / 1000);
	else if (p->too_large)
		xasprintf(&cause, "credential_process wrote more than %d "
		    "bytes", AWSCRED_PROCESS_MAX);
	else if (have_status && WIFSIGNALED(status))
		xasprintf(&cause, "credential_process was killed by signal "
		    "%d%s", WTERMSIG(status), err);
	else if (have_status && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		xasprintf(&cause, "credential_process exited with status "
		    "%d%s", WEXITSTATUS(status), err);
	else if ((c = awscred_parse_process(p->out, p->outlen, p->source,
	    &cause2)) == NULL) {
		xasprintf(&cause, "credential_process: %s", cause2);
		free(cause2);
	}
	p->cb(c, cause, p->arg);
	free(cause);
	awscred_proc_free(p);
}

static void
awscred_proc_reap_cb(evutil_socket_t fd, short events, void *arg)
{
	struct awscred_proc	*p = arg;
	pid_t			 r;
	int			 status = 0;

	r = waitpid(p->pid, &status, WNOHANG);
	if (r == 0 || (r == -1 && errno == EINTR)) {
		p->reap_ms = p->reap_ms == 0 ? 5 : p->reap_ms * 2;
		if (p->reap_ms > AWSCRED_REAP_MS_MAX)
			p->reap_ms = AWSCRED_REAP_MS_MAX;
		awscred_proc_reap_schedule(p, p->reap_ms);
		return;
	}
	/* ECHILD: someone else reaped it (SIGCHLD ignored); status unknown. */
	event_del(&p->timeout_ev);
	log_trace(TRACE_UPSTREAM, "aws creds: credential_process (pid %ld) "
	    "ended", (long)p->pid);
	awscred_proc_finish(p, status, r == p->pid);
}

static void
awscred_proc_reap_schedule(struct awscred_proc *p, long ms)
{
	struct timeval	tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&p->reap_ev, &tv);
}

static void
awscred_proc_free(struct awscred_proc *p)
{
	awscred_proc_close(p);
	event_del(&p->timeout_ev);
	event_del(&p->reap_ev);
	LIST_REMOVE(p, entry);
	freezero(p->out, AWSCRED_PROCESS_MAX);
	free(p->source);
	free(p);
}

struct awscred_proc *
awscred_process_start(const char *cmd, long timeout_ms, const char *source,
    void (*cb)(struct aws_creds *, const char *, void *), void *arg,
    char **cause)
{
	struct awscred_proc	*p;
	struct timeval		 tv;
	sigset_t		 none;
	int			 out[2], err[2], devnull;
	pid_t			 pid;

	if (bsp_base == NULL) {
		xasprintf(cause, "no event loop");
		return (NULL);
	}
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		xasprintf(cause, "/dev/null: %s", strerror(errno));
		return (NULL);
	}
	/* Only our ends are non-blocking: the child writes as usual. */
	if (pipe2(out, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		close(devnull);
		return (NULL);
	}
	if (pipe2(err, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(devnull);
		return (NULL);
	}
	if (fcntl(out[0], F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(err[0], F_SETFL, O_NONBLOCK) == -1) {
		xasprintf(cause, "fcntl: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		close(devnull);
		return (NULL);
	}
	sigemptyset(&none);
	log_flush();		/* a child must not inherit unwritten lines */
	switch (pid = fork()) {
	case -1:
		xasprintf(cause, "fork: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		close(devnull);
		return (NULL);
	case 0:
		/* Only async-signal-safe calls from here on. */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (dup2(devnull, 0) == -1 || dup2(out[1], 1) == -1 ||
		    dup2(err[1], 2) == -1)
			_exit(126);
		bsp_closefrom(3);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	default:
		break;
	}
	setpgid(pid, pid);	/* both sides, so kill(-pid) never misses */
	close(out[1]);
	close(err[1]);
	close(devnull);

	p = xcalloc(1, sizeof *p);
	p->pid = pid;
	p->out_fd = out[0];
	p->err_fd = err[0];
	p->out = xmalloc(AWSCRED_PROCESS_MAX);
	p->timeout_ms = timeout_ms;
	p->source = xstrdup(source);
	p->cb = cb;
	p->arg = arg;
	event_assign(&p->out_ev, bsp_base, p->out_fd, EV_READ | EV_PERSIST,
	    awscred_proc_read_cb, p);
	event_assign(&p->err_ev, bsp_base, p->err_fd, EV_READ | EV_PERSIST,
	    awscred_proc_read_cb, p);
	evtimer_assign(&p->timeout_ev, bsp_base, awscred_proc_timeout_cb, p);
	evtimer_assign(&p->reap_ev, bsp_base, awscred_proc_reap_cb, p);
	event_add(&p->out_ev, NULL);
	event_add(&p->err_ev, NULL);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(&p->timeout_ev, &tv);
	LIST_INSERT_HEAD(&awscred_procs, p, entry);
	log_trace(TRACE_UPSTREAM, "aws creds: credential_process started "
	    "(pid %ld)", (long)pid);
	return (p);
}

void
awscred_process_cancel(struct awscred_proc *p)
{
	if (p == NULL)
		return;
	p->cb = NULL;
	p->arg = NULL;
	awscred_proc_kill(p);
	awscred_proc_close(p);
	awscred_proc_check_eof(p);
}

void
awscred_process_reap_all(void)
{
	struct awscred_proc	*p;

	while ((p = LIST_FIRST(&awscred_procs)) != NULL) {
		awscred_proc_kill(p);
		while (waitpid(p->pid, NULL, 0) == -1 && errno == EINTR)
			continue;
		p->cb = NULL;
		awscred_proc_free(p);
	}
}
