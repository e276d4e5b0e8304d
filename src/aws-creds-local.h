/*
 * aws-creds-local.h: what the files of the AWS credential chain share;
 * aws-creds.h is what the rest of the daemon sees.
 *
 *   aws-creds.c          the chain: its state machine, the public API
 *   aws-creds-source.c   the sources it tries, and the one fetch in
 *                        flight (STS, the container endpoint, IMDS)
 *   aws-creds-process.c  the credential_process runner
 *   aws-creds-parse.c    credentials objects and the parsers: shared
 *                        files, credential_process output, IMDS and
 *                        container JSON, STS XML
 *
 * Calls go down that list, never up: a source hands its answer to the
 * chain through the callback given to awscred_fetch_begin().
 */

#ifndef AWS_CREDS_LOCAL_H
#define AWS_CREDS_LOCAL_H

#include <stddef.h>

#define AWSCRED_MAX_TOKEN	(16 * 1024)

struct aws_creds;

/* What a source's start function says. */
enum awscred_rc {
	AWSCRED_SKIP,		/* not configured */
	AWSCRED_DONE,		/* credentials in *out */
	AWSCRED_FAIL,		/* configured, but failed: *cause */
	AWSCRED_PENDING,	/* answer comes through the fetch's callback */
};

/* The aws.* settings that the chain depends on (copied, secrets wiped). */
struct awscred_settings {
	char	*access_key_id;
	char	*secret_access_key;
	char	*session_token;
	char	*profile;
	char	*region;
	int	 bearer;
};

/* aws-creds-source.c */
enum awscred_rc	 awscred_src_config(const struct awscred_settings *,
		     struct aws_creds **, char **);
enum awscred_rc	 awscred_src_env(const struct awscred_settings *,
		     struct aws_creds **, char **);
enum awscred_rc	 awscred_src_profile(const struct awscred_settings *,
		     struct aws_creds **, char **);
enum awscred_rc	 awscred_src_webid(const struct awscred_settings *,
		     struct aws_creds **, char **);
enum awscred_rc	 awscred_src_container(const struct awscred_settings *,
		     struct aws_creds **, char **);
enum awscred_rc	 awscred_src_imds(const struct awscred_settings *,
		     struct aws_creds **, char **);
/* Before a source starts: forget the last label; a PENDING answer goes to
   done (credentials, or NULL and why not) on a later loop pass. */
void		 awscred_fetch_begin(void (*)(struct aws_creds *,
		     const char *));
/* What the source being tried called itself ("profile dev"), or NULL. */
const char	*awscred_fetch_label(void);
/* Cancel the fetch in flight (an HTTP request, a credential_process). */
void		 awscred_fetch_cancel(void);
/* Cancel, and free the label. */
void		 awscred_fetch_free(void);

/* aws-creds-parse.c */
void		 awscred_clean(const char *, size_t, char *, size_t);

#endif /* AWS_CREDS_LOCAL_H */
