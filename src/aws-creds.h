/*
 * aws-creds.h: AWS credentials for SigV4, resolved on the loop through the
 * standard chain (SPEC §6, BEDROCK-FACTS §4): aws.* keys, the environment,
 * the shared files (static keys, credential_process, web identity), web
 * identity from the environment (STS AssumeRoleWithWebIdentity), the
 * ECS/EKS container endpoint, and EC2 IMDSv2.
 *
 * Temporary credentials are refreshed in the background 10 minutes before
 * they expire (or after half their remaining life if that is shorter), one
 * fetch at a time; the old ones stay in use until new ones arrive. When the
 * chain finds nothing it is tried again with backoff (5 s doubling to
 * 5 min). Secrets are wiped when freed and never logged.
 */

#ifndef AWS_CREDS_H
#define AWS_CREDS_H

#include <stddef.h>
#include <time.h>

struct config;

struct aws_creds {			/* immutable once published; refcounted */
	int		 refcnt;
	char		*access_key_id;
	char		*secret_access_key;
	char		*session_token;		/* NULL if none */
	time_t		 expiration;		/* 0: does not expire */
	const char	*source;		/* "config", "environment",
						   "profile NAME",
						   "credential_process",
						   "web identity",
						   "container", "imds" */
};

#define AWSCRED_REFRESH_BEFORE	600		/* s before expiry */
#define AWSCRED_BACKOFF_MIN	5		/* s */
#define AWSCRED_BACKOFF_MAX	300		/* s */
#define AWSCRED_PROCESS_TIMEOUT	30000		/* ms */
#define AWSCRED_PROCESS_MAX	(64 * 1024)	/* stdout ceiling */
#define AWSCRED_FILE_MAX	(1024 * 1024)	/* shared files, tokens */
#define AWSCRED_BODY_MAX	(64 * 1024)	/* IMDS, container, STS */

/* Start the chain (async); 0 even if nothing is found yet. */
int		 aws_creds_init(struct config *, char **);
/* SIGHUP: new aws.* settings restart the chain; the old credentials stay
   in use until it ends. */
int		 aws_creds_reload(struct config *, char **);
/* Cancel fetches, kill a running credential_process, free everything. */
void		 aws_creds_free(void);
/* The current credentials (a new reference), or NULL if none are usable
   (then the next retry is brought forward, at most every 5 s). */
struct aws_creds *aws_creds_get(void);
void		 aws_creds_unref(struct aws_creds *);
/* /health/ready: 1 if usable (or aws.bearer_token); else 0 and a short
   detail ("no AWS credentials configured", "... (failed: imds)"). */
int		 aws_creds_ready(const char **);
/* Why there are none, in full, for a 503 that says what to configure;
   never NULL when aws_creds_get() gives NULL; NULL if all is well. */
const char	*aws_creds_problem(void);
/*
 * AWS said ExpiredToken/UnrecognizedClient for these credentials: refresh
 * once (single flight; not again if they were already replaced) and call
 * cb(arg, ok) on a later loop pass; ok is 1 if different keys are now
 * current. A refresh that brought the same keys is not repeated for 10 s.
 */
void		 aws_creds_expired(struct aws_creds *, void (*)(void *, int),
		     void *);
/* A waiting request went away: its callbacks (by arg) are dropped. */
void		 aws_creds_cancel_wait(void *);
/*
 * Someone needs credentials: 1 if usable ones are current (take them with
 * aws_creds_get()); 0 if the chain is resolving them (or was woken from a
 * backoff, at most every 5 s, as aws_creds_get() does) and cb(arg, ok) will
 * say on a later loop pass; -1 if there are none to wait for.
 */
int		 aws_creds_wait(void (*)(void *, int), void *);

/*
 * The parts below are exposed for the unit tests and fuzzers: the parsers
 * (aws-creds-parse.c) and the credential_process runner
 * (aws-creds-process.c).
 */

/* New credentials (refcnt 1) after checking every field; NULL + cause. */
struct aws_creds *awscred_new(const char *, const char *, const char *,
		     time_t, const char *, char **);
/* "2026-11-22T12:00:00Z", also with ".123" and "+00:00"/"-0500". */
int		 awscred_parse_time(const char *, time_t *);

/* The keys of one profile that the chain uses, merged over both files. */
struct awscred_profile {
	char	*access_key_id;
	char	*secret_access_key;
	char	*session_token;
	char	*credential_process;
	char	*role_arn;
	char	*web_identity_token_file;
	char	*role_session_name;
	char	*source_profile;
	char	*credential_source;
	char	*sso;			/* any sso_* key */
	char	*region;
	int	 found;			/* the section exists */
};
/*
 * Parse a shared file and merge the keys of one profile into p (later
 * values win). config_file: ~/.aws/config syntax ("[profile NAME]" and
 * "[default]"), else ~/.aws/credentials ("[NAME]"). Returns 1 if the
 * section was found, else 0.
 */
int		 awscred_ini_profile(const char *, size_t, int, const char *,
		     struct awscred_profile *);
void		 awscred_profile_clear(struct awscred_profile *);

/* credential_process output: {"Version":1,"AccessKeyId",...}. */
struct aws_creds *awscred_parse_process(const char *, size_t, const char *,
		     char **);
/* IMDS and container answers: {"AccessKeyId","SecretAccessKey","Token",
   "Expiration"[,"Code":"Success"]}. */
struct aws_creds *awscred_parse_metadata(const char *, size_t, const char *,
		     char **);
/* The decoded text of <tag> in an XML answer, allocated, or NULL. */
char		*awscred_xml_get(const char *, size_t, const char *);
/* STS AssumeRoleWithWebIdentity answer, or an ErrorResponse (cause). */
struct aws_creds *awscred_parse_sts(const char *, size_t, const char *,
		     char **);

/*
 * Run a credential_process without blocking: /bin/sh -c CMD in its own
 * process group, stdout read on the loop (AWSCRED_PROCESS_MAX), killed
 * after timeout_ms, reaped with waitpid(WNOHANG) from a timer. cb gets the
 * credentials (a reference it owns) or NULL and a cause, on a later loop
 * pass. Cancel drops the callback; the child is killed and reaped.
 */
struct awscred_proc;
struct awscred_proc *awscred_process_start(const char *, long, const char *,
		     void (*)(struct aws_creds *, const char *, void *), void *,
		     char **);
void		 awscred_process_cancel(struct awscred_proc *);
/* Kill and reap every child still running (blocking; for shutdown). */
void		 awscred_process_reap_all(void);

#endif /* AWS_CREDS_H */
