/*
 * main.c: command line, start-up, signals and the event loop.
 *
 * Without a command the program runs the daemon in the foreground (it never
 * forks; systemd or another supervisor runs it). With a command it performs
 * one administrative action on the configured database and exits.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "bsp.h"
#include "crypto.h"
#include "store.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define BSP_CONFIG_FILE	SYSCONFDIR "/bedrock-sso-proxy.yaml"

static struct config_source	 bsp_source;
static struct event		 ev_sigterm, ev_sigint, ev_sighup, ev_sigusr1;
static int			 bsp_exit_code;

static __dead void	usage(void);

static __dead void
usage(void)
{
	fprintf(stderr, "usage: %s [-dnv] [-f file] [-T trace] "
	    "[-D key=value] [command [args]]\n", BSP_NAME);
	exit(1);
}

/* Apply logging settings from the configuration and the flags. */
static void
main_log_configure(const struct config *c)
{
	int	level = c->log_level;

	if (bsp_debug && level < LOG_LVL_INFO)
		level = LOG_LVL_INFO;
	level += bsp_verbose;
	log_configure(level, c->log_format,
	    !bsp_debug && c->log_output == LOG_OUT_SYSLOG);
}

/* Tell systemd (Type=notify) how we are doing; no libsystemd needed. */
static void
sd_notify_send(const char *msg)
{
	const char		*path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un	 sun;
	socklen_t		 len;
	int			 fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof sun.sun_path)
		return;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len) == -1)
		log_warn("cannot notify the service manager");
	close(fd);
}

static void
main_drained(void)
{
	event_base_loopexit(bsp_base, NULL);
}

static void
main_sigterm(int sig, short ev, void *arg)
{
	static int	stopping;

	if (stopping++) {
		log_info("received %s again; still letting requests finish "
		    "(at most server.shutdown_timeout)", sig == SIGINT ?
		    "SIGINT" : "SIGTERM");
		return;
	}
	log_info("received %s; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	sd_notify_send("STOPPING=1");
	server_shutdown(main_drained);
}

/* Keys that only take effect after a restart: warn when they change. */
static void
main_reload_warn(const struct config *old, const struct config *new)
{
	size_t			 i;
	const struct config_key	*k;
	const char		*a, *b;

	for (i = 0; i < config_nkeys; i++) {
		k = &config_keys[i];
		if (k->scope != CS_ROOT || !(k->flags & CK_RESTART))
			continue;
		if (k->type == CT_STRING || k->type == CT_PATH) {
			a = *(char *const *)((const char *)old + k->off);
			b = *(char *const *)((const char *)new + k->off);
			if ((a == NULL) != (b == NULL) ||
			    (a != NULL && strcmp(a, b) != 0))
				log_warnx("%s changed; it takes effect only "
				    "after a restart", k->name);
		} else if (k->type == CT_INT || k->type == CT_DURATION) {
			if (*(const long long *)((const char *)old + k->off) !=
			    *(const long long *)((const char *)new + k->off))
				log_warnx("%s changed; it takes effect only "
				    "after a restart", k->name);
		}
	}
}

/* A reload's last step: the users' state read under the new policy. */
static void
main_reload_done(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("configuration reloaded, but the users' state could "
		    "not be read again under its access policy; it will be "
		    "when the database answers");
	else
		log_info("configuration reloaded");
	sd_notify_send("READY=1");
}

/*
 * The reload's signing keys are in place (or could not be made: logged).
 * The access policy may have changed: who is still admitted?
 */
static void
main_reload_keys(int status, void *arg)
{
	users_load_state(main_reload_done, NULL);
}

/* SIGHUP: build a fresh configuration, check it, swap it in. */
static void
main_sighup(int sig, short ev, void *arg)
{
	struct config		*c, *old;
	struct config_errors	 errs;
	char			*cause = NULL;
	size_t			 i;

	log_info("received SIGHUP; reloading the configuration");
	if ((c = config_load(&bsp_source, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++) {
			struct log_field f[] = {
				LFS("where", errs.v[i].where),
			};
			log_fields(LOG_LVL_ERROR, errs.v[i].msg, f, 1);
		}
		log_warnx("configuration reload failed (%zu errors); keeping "
		    "the running configuration", errs.n);
		config_errors_free(&errs);
		return;
	}
	/*
	 * Everything that can fail first; then nothing can. The modules
	 * last: the tokens module may write a new signing key.
	 */
	if (server_reload_prepare(c, &cause) == -1 ||
	    modules_prepare(c, &cause) == -1) {
		server_reload_abort();
		log_warnx("configuration reload failed: %s; keeping the running "
		    "configuration", cause);
		free(cause);
		config_unref(c);
		return;
	}
	modules_commit(c);
	server_reload_commit(c);
	main_reload_warn(cfg, c);
	old = cfg;
	cfg = c;
	config_unref(old);
	main_log_configure(cfg);
	/*
	 * Done when the new signing keys are in place and the users' state
	 * is read again (with PostgreSQL on later turns of the loop).
	 */
	tokens_reload_wait(main_reload_keys, NULL);
}

static void
main_sigusr1(int sig, short ev, void *arg)
{
	log_info("received SIGUSR1; logs go to %s, nothing to reopen",
	    cfg->log_output == LOG_OUT_SYSLOG && !bsp_debug ? "syslog" :
	    "stderr");
}

static void
main_log_versions(void)
{
	char			*db = store_url_redacted(cfg->database_url);
	struct log_field	 f[] = {
		LFS("version", PACKAGE_VERSION),
		LFS("libevent", event_get_version()),
		LFS("event_method", event_base_get_method(bsp_base)),
		LFS("openssl", OpenSSL_version(OPENSSL_VERSION)),
		LFS("sqlite", store_version(STORE_SQLITE)),
		LFS("libpq", store_version(STORE_PG)),
		LFS("libsodium", crypto_sodium_version()),
		LFS("jansson", jansson_version_str()),
		LFS("libyaml", yaml_get_version_string()),
		LFS("config", cfg->path != NULL ? cfg->path :
		    "built-in defaults"),
		LFS("database", db),
	};

	log_fields(LOG_LVL_INFO, "starting " BSP_NAME, f, nitems(f));
	free(db);
}

/*
 * Open the database: SQLite at once; PostgreSQL connects in the
 * background (the modules load their state when it comes up).
 */
static int
main_store_open(char **cause)
{
	struct store_conf	sc;
	int			rc;

	if (store_conf_from_config(cfg, &sc, cause) == -1)
		return (-1);
	rc = store_open(&sc, cause);
	store_conf_clear(&sc);
	return (rc);
}

static int
main_daemon(void)
{
	struct event_config	*ec;
	char			*cause = NULL;
	sigset_t		 mask;

	signal(SIGPIPE, SIG_IGN);
	/* A file size limit reached is a failed write, not a reason to die. */
	signal(SIGXFSZ, SIG_IGN);
	bsp_start_time = time(NULL);
	if ((ec = event_config_new()) == NULL)
		fatalx("event_config_new");
	event_config_require_features(ec, EV_FEATURE_EARLY_CLOSE);
	/*
	 * Batch the epoll changes made within one loop iteration (a relayed
	 * call made 12 epoll_ctl calls without it). Unsafe only with dup()ed
	 * descriptors in the loop, and the daemon never dups one (the only
	 * dup2 is in the credential_process child, before exec).
	 */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	if ((bsp_base = event_base_new_with_config(ec)) == NULL &&
	    (bsp_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	event_config_free(ec);
	main_log_versions();

	if ((bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL) {
		log_warnx("no DNS resolver configured (/etc/resolv.conf); "
		    "outbound names will not resolve");
		if ((bsp_dns = evdns_base_new(bsp_base, 0)) == NULL)
			fatalx("evdns_base_new");
	}
	if (main_store_open(&cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		return (2);
	}
	metrics_init();
	routes_init();
	if (modules_init(cfg, &cause) == -1 ||
	    server_init(cfg, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		modules_free();
		server_free();
		store_close();
		return (2);
	}

	evsignal_assign(&ev_sigterm, bsp_base, SIGTERM, main_sigterm, NULL);
	evsignal_assign(&ev_sigint, bsp_base, SIGINT, main_sigterm, NULL);
	evsignal_assign(&ev_sighup, bsp_base, SIGHUP, main_sighup, NULL);
	evsignal_assign(&ev_sigusr1, bsp_base, SIGUSR1, main_sigusr1, NULL);
	evsignal_add(&ev_sigterm, NULL);
	evsignal_add(&ev_sigint, NULL);
	evsignal_add(&ev_sighup, NULL);
	evsignal_add(&ev_sigusr1, NULL);

	sd_notify_send("READY=1");
	log_info("ready; public URL %s", cfg->server_public_url);
	event_base_dispatch(bsp_base);
	if (modules_failed())
		bsp_exit_code = 2;

	/*
	 * Already stopping: further signals must not cut the cleanup short.
	 * Block them while libevent restores the default actions, then
	 * ignore them (which also discards any that arrived meanwhile).
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	evsignal_del(&ev_sigterm);
	evsignal_del(&ev_sigint);
	evsignal_del(&ev_sighup);
	evsignal_del(&ev_sigusr1);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	server_free();
	modules_free();
	store_close();
	evdns_base_free(bsp_dns, 0);
	event_base_free(bsp_base);
	bsp_base = NULL;
	log_info("stopped");
	return (bsp_exit_code);
}

/* For fatal conditions found on the loop: stop with this exit status. */
void
bsp_exit_soon(int code)
{
	bsp_exit_code = code;
	if (bsp_base != NULL)
		event_base_loopexit(bsp_base, NULL);
}

int
main(int argc, char **argv)
{
	struct config_errors	 errs;
	const char		*file = NULL;
	char			*cause, *eq;
	int			 ch, check = 0, trace = 0, rc;

	log_init(BSP_NAME);
	if (crypto_init() == -1) {
		fprintf(stderr, "%s: cannot initialise the crypto libraries\n",
		    BSP_NAME);
		return (2);
	}
	log_libevent_init();

	while ((ch = getopt(argc, argv, "+dnvf:T:D:")) != -1) {
		switch (ch) {
		case 'd':
			bsp_debug = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'v':
			bsp_verbose++;
			break;
		case 'f':
			file = optarg;
			break;
		case 'T':
			if (log_parse_trace(optarg, &trace, &cause) == -1) {
				fprintf(stderr, "%s: -T: %s\n", BSP_NAME,
				    cause);
				free(cause);
				usage();
			}
			break;
		case 'D':
			if ((eq = strchr(optarg, '=')) == NULL ||
			    eq == optarg) {
				fprintf(stderr, "%s: -D needs key=value\n",
				    BSP_NAME);
				usage();
			}
			bsp_source.defines = xreallocarray(bsp_source.defines,
			    bsp_source.ndefines + 1,
			    sizeof *bsp_source.defines);
			bsp_source.defines[bsp_source.ndefines].key =
			    xstrndup(optarg, (size_t)(eq - optarg));
			bsp_source.defines[bsp_source.ndefines].value =
			    xstrdup(eq + 1);
			bsp_source.ndefines++;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;

	bsp_source.path = file != NULL ? file : BSP_CONFIG_FILE;
	bsp_source.check = modules_config_check;
	bsp_source.path_explicit = file != NULL;
	bsp_source.environ = environ;
	if ((cfg = config_load(&bsp_source, &errs)) == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
		return (1);
	}
	if (check) {
		if (modules_check(cfg, &cause) == -1) {
			fprintf(stderr, "%s\n", cause);
			free(cause);
			config_unref(cfg);
			return (1);
		}
		if (bsp_verbose > 0)
			config_print(cfg, stdout);
		printf("configuration OK\n");
		config_unref(cfg);
		return (0);
	}
	main_log_configure(cfg);
	log_set_trace(trace);

	if (argc > 0)
		rc = command_run(argc, argv);
	else
		rc = main_daemon();
	config_unref(cfg);
	cfg = NULL;
	for (ch = 0; (size_t)ch < bsp_source.ndefines; ch++) {
		free(bsp_source.defines[ch].key);
		freezero_str(bsp_source.defines[ch].value);
	}
	free(bsp_source.defines);
	libevent_global_shutdown();
	return (rc);
}
