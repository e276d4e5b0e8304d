/*
 * main.c: command line, start-up, signals and the event loop.
 *
 * Without a command the program runs the daemon in the foreground (it never
 * forks; systemd or another supervisor runs it). With a command it performs
 * one administrative action on the configured database and exits, or, for
 * the laptop's commands (login, token, relay, ...), runs that without any
 * daemon configuration.
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
#include "aws-creds.h"
#include "http-client.h"
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

/*
 * What a configuration needs from AWS before it can be put in place: the
 * secrets of its KEY_arn keys (Secrets Manager) and the public key of
 * jwt.kms_key_id (KMS), read at once through the credential chain. At
 * start-up the loop runs until they are in (each call is bounded by its
 * timeout, the wait for credentials by the chain's); on SIGHUP the
 * running configuration stays until they are, and stays for good if one
 * cannot be read.
 */
#define MAIN_PREP_TIMEOUT	10000	/* ms, a GetSecretValue call */

struct main_prep {
	struct config		*c;		/* loaded with arn_pending */
	int			 left;
	char			*cause;		/* the first failure */
	struct config_secret	*secrets;
	size_t			 nsecrets;
	struct secrets_read	*sr;		/* until it answers */
	struct kms_fetch	*kf;
	void			(*done)(struct main_prep *);
};

static struct main_prep	*main_prep_running;
static int		 main_reload_again;

static int
main_prep_needed(const struct config *c)
{
	return (c->narns > 0 || c->jwt_kms_key_id != NULL);
}

static void
main_prep_free(struct main_prep *mp)
{
	if (mp == NULL)
		return;
	secrets_cancel(mp->sr);
	kms_fetch_cancel(mp->kf);
	secrets_values_free(mp->secrets, mp->nsecrets);
	free(mp->cause);
	config_unref(mp->c);
	free(mp);
}

static void
main_prep_part(struct main_prep *mp, const char *why)
{
	if (why != NULL && mp->cause == NULL)
		mp->cause = xstrdup(why);
	if (--mp->left == 0)
		mp->done(mp);
}

static void
main_prep_secrets(struct config_secret *v, size_t n, const char *why,
    void *arg)
{
	struct main_prep	*mp = arg;

	mp->sr = NULL;
	mp->secrets = v;
	mp->nsecrets = n;
	main_prep_part(mp, why);
}

static void
main_prep_kms(int rc, const char *why, void *arg)
{
	struct main_prep	*mp = arg;
	char			*cause = NULL, *why2 = NULL;

	mp->kf = NULL;
	if (rc == -1)
		xasprintf(&cause, "jwt.kms_key_id: cannot read the public key "
		    "of KMS key %s: %s", mp->c->jwt_kms_key_id, why);
	else if (tokens_kms_check(mp->c, &why2) == -1) {
		xasprintf(&cause, "jwt.kms_key_id: %s", why2);
		free(why2);
	}
	main_prep_part(mp, cause);
	free(cause);
}

/* Start reading what c needs; mp->done(mp) when it is all in. */
static struct main_prep *
main_prep_start(struct config *c, void (*done)(struct main_prep *))
{
	struct main_prep	*mp;

	mp = xcalloc(1, sizeof *mp);
	mp->c = config_ref(c);
	mp->done = done;
	mp->left = (c->narns > 0) + (c->jwt_kms_key_id != NULL);
	if (c->narns > 0)
		mp->sr = secrets_read(c, MAIN_PREP_TIMEOUT,
		    main_prep_secrets, mp);
	if (c->jwt_kms_key_id != NULL)
		mp->kf = kms_fetch(c->jwt_kms_key_id, main_prep_kms, mp);
	return (mp);
}

/*
 * The configuration again, now with the secrets read (same file, same
 * ARNs); NULL with the errors logged.
 */
static struct config *
main_prep_config(struct main_prep *mp)
{
	struct config_source	 src = bsp_source;
	struct config_errors	 errs;
	struct config		*c;
	size_t			 i;

	if (mp->c->narns == 0)
		return (config_ref(mp->c));
	src.secrets = mp->secrets;
	src.nsecrets = mp->nsecrets;
	src.arn_pending = 0;
	if ((c = config_load(&src, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++) {
			struct log_field f[] = {
				LFS("where", errs.v[i].where),
			};
			log_fields(LOG_LVL_ERROR, errs.v[i].msg, f, 1);
		}
		config_errors_free(&errs);
	}
	return (c);
}

static void	main_reload_apply(struct config *);
static void	main_sighup(int, short, void *);

/* A reload's reads from AWS are in: go on with it, or keep the old. */
static void
main_reload_prepped(struct main_prep *mp)
{
	struct config	*c = NULL;

	main_prep_running = NULL;
	if (mp->cause != NULL)
		log_warnx("configuration reload failed: %s; keeping the "
		    "running configuration", mp->cause);
	else if ((c = main_prep_config(mp)) == NULL)
		log_warnx("configuration reload failed; keeping the running "
		    "configuration");
	main_prep_free(mp);
	if (c != NULL) {
		main_reload_apply(c);
		config_unref(c);
	}
	if (main_reload_again) {
		main_reload_again = 0;
		main_sighup(SIGHUP, 0, NULL);
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
	struct config		*c;
	struct config_errors	 errs;
	size_t			 i;

	if (main_prep_running != NULL) {
		/* Once the one reading from AWS is over. */
		main_reload_again = 1;
		return;
	}
	log_info("received SIGHUP; reloading the configuration");
	bsp_source.arn_pending = 1;
	c = config_load(&bsp_source, &errs);
	bsp_source.arn_pending = 0;
	if (c == NULL) {
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
	if (main_prep_needed(c)) {
		main_prep_running = main_prep_start(c, main_reload_prepped);
		config_unref(c);
		return;
	}
	main_reload_apply(c);
	config_unref(c);
}

/* A new configuration, complete: prepare every part, then swap it in. */
static void
main_reload_apply(struct config *c)
{
	struct config	*old;
	char		*cause = NULL;

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
		return;
	}
	modules_commit(c);
	server_reload_commit(c);
	main_reload_warn(cfg, c);
	old = cfg;
	cfg = config_ref(c);
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
#ifdef BSP_JEMALLOC
		LFS("allocator", "jemalloc"),
#else
		LFS("allocator", "libc"),
#endif
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
	sc.checkpointer = 1;
	rc = store_open(&sc, cause);
	store_conf_clear(&sc);
	return (rc);
}

/* At start-up: the reads from AWS are in. */
static void
main_startup_prepped(struct main_prep *mp)
{
	event_base_loopbreak(bsp_base);
}

/* The HTTP client and the chain of main_startup_prep(), ended. */
static void
main_prep_stop(void)
{
	aws_creds_free();
	hc_shutdown();
}

/*
 * Read what the configuration needs from AWS before anything else
 * starts, running the loop until it is in; then load the configuration
 * again with the secrets. The HTTP client and the credential chain stay
 * up (main_prep_stop() ends them). -1 (said why, both ended) if one
 * cannot be read.
 */
static int
main_startup_prep(void)
{
	struct main_prep	*mp;
	struct config		*c;
	char			*cause = NULL;
	int			 rc = -1;

	if (hc_init(cfg->aws_ca_file, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		return (-1);
	}
	if (aws_creds_init(cfg, &cause) == -1) {
		log_errorx("aws credentials: %s", cause);
		free(cause);
		hc_shutdown();
		return (-1);
	}
	mp = main_prep_start(cfg, main_startup_prepped);
	while (mp->left > 0) {
		if (event_base_dispatch(bsp_base) != 0 && mp->left > 0) {
			mp->cause = xstrdup("the reads from AWS stalled");
			break;
		}
	}
	if (mp->cause != NULL)
		log_errorx("%s", mp->cause);
	else if ((c = main_prep_config(mp)) == NULL)
		log_errorx("configuration with the secrets from Secrets "
		    "Manager is not valid");
	else {
		config_unref(cfg);
		cfg = c;
		rc = 0;
	}
	main_prep_free(mp);
	if (rc == -1)
		main_prep_stop();
	return (rc);
}

/*
 * A command with a configuration that needs AWS (KEY_arn, jwt.kms_key_id):
 * the reads first, on a loop of its own that the command uses too (KMS
 * signs what "token mint" makes).
 */
static int
main_command(int argc, char **argv)
{
	int	rc = 1;

	if ((bsp_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL &&
	    (bsp_dns = evdns_base_new(bsp_base, 0)) == NULL)
		fatalx("evdns_base_new");
	if (main_startup_prep() == 0) {
		rc = command_run(argc, argv);
		main_prep_stop();
	}
	evdns_base_free(bsp_dns, 0);
	bsp_dns = NULL;
	event_base_free(bsp_base);
	bsp_base = NULL;
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
	log_buffer_start(bsp_base);
	main_log_versions();

	if ((bsp_dns = evdns_base_new(bsp_base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL) {
		log_warnx("no DNS resolver configured (/etc/resolv.conf); "
		    "outbound names will not resolve");
		if ((bsp_dns = evdns_base_new(bsp_base, 0)) == NULL)
			fatalx("evdns_base_new");
	}
	if (main_prep_needed(cfg)) {
		if (main_startup_prep() == -1) {
			evdns_base_free(bsp_dns, 0);
			event_base_free(bsp_base);
			bsp_base = NULL;
			return (1);
		}
		/* The modules start them again, with what they are given. */
		main_prep_stop();
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
	/* A reload still reading from AWS is dropped. */
	main_prep_free(main_prep_running);
	main_prep_running = NULL;
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
	log_buffer_stop();
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
	const struct command	*cmd;
	const char		*file = NULL;
	char			*cause, *eq;
	int			 ch, check = 0, trace = 0, rc;

	evmem_init();
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

	/* The laptop's commands read no daemon configuration. */
	if (argc > 0 && !check && (cmd = command_find(argc, argv)) != NULL &&
	    (cmd->flags & CMD_CLIENT)) {
		if (file != NULL || bsp_source.ndefines > 0) {
			fprintf(stderr, "%s: %s uses no daemon configuration "
			    "(-f, -D)\n", BSP_NAME, argv[0]);
			return (1);
		}
		log_configure(LOG_LVL_ERROR + bsp_verbose, LOG_FMT_TEXT, 0);
		log_set_trace(trace);
		rc = command_exec(cmd, argc, argv);
		libevent_global_shutdown();
		evmem_release();
		return (rc);
	}

	bsp_source.path = file != NULL ? file : BSP_CONFIG_FILE;
	bsp_source.check = modules_config_check;
	bsp_source.path_explicit = file != NULL;
	bsp_source.environ = environ;
	/* KEY_arn secrets are read once the loop runs (main_daemon). */
	bsp_source.arn_pending = 1;
	cfg = config_load(&bsp_source, &errs);
	bsp_source.arn_pending = 0;
	if (cfg == NULL) {
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

	if (argc > 0 && main_prep_needed(cfg))
		rc = main_command(argc, argv);
	else if (argc > 0)
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
	evmem_release();
	return (rc);
}
